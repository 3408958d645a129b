"""The EKS cluster, its access entries, Fargate profile and the Kubernetes provider for everything else."""
