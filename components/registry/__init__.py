"""The vLLM image through an ECR pull-through cache in the stack's region, instead of Docker Hub at run time."""
