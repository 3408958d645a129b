"""Karpenter: its IAM, interruption queue, Helm releases, and the node classes and pools it buys nodes from."""
