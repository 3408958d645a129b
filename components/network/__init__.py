"""The VPC: subnets per availability zone, NAT, the S3 gateway endpoint and discovery tags."""
