"""Shipped default weights (checkpoint and ONNX); see README.md in this folder."""
