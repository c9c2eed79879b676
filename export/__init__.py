"""torch → ONNX (and ONNX → TensorRT) export with validation."""
