"""Stack configs the shipped stack files do not cover, shared by the tests that plan them."""

CERTIFICATE_ARN = "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
# The endpoint on the internet through the AWS Load Balancer Controller: TLS for llm.example.com, one office range.
PUBLIC_ENDPOINT = {
    "llm:serviceType": "LoadBalancer",
    "llm:loadBalancerScheme": "internet-facing",
    "llm:loadBalancerCertificateArn": CERTIFICATE_ARN,
    "llm:endpointHostname": "llm.example.com",
    "llm:loadBalancerSourceRanges": '["203.0.113.0/24"]',
}
# A Secrets Manager secret with Docker Hub credentials for the ECR pull-through cache (llm:dockerHubCredentialsArn).
DOCKER_HUB_CREDENTIALS = (
    "arn:aws:secretsmanager:us-west-2:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
)
