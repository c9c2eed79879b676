"""Test doubles of the exact TensorRT and CUDA Python API surface ddpm-edge calls (see each module)."""
