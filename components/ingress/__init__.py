"""The AWS Load Balancer Controller and the Network Load Balancer it makes for the endpoint."""
