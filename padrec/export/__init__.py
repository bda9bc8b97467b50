"""Export: trained checkpoints -> ONNX graphs, checks against torch, TensorRT engines, Triton model
repositories. Nothing here imports Triton's Python-backend utilities (`export/` holds the model file
the Python backend runs)."""
