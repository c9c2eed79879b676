"""PyTorch reference of the course model: ContextUnet, checkpoints, samplers, training."""
