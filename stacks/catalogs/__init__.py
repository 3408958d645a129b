"""What the platform knows about the world: open models, GPU instance types and prices, EKS versions."""
