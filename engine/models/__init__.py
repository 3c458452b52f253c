"""Leased ML models: training (sklearn -> ONNX) in the core; the leasing and serving live elsewhere."""
