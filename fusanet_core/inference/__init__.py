"""Inference: the Predictor, point fitting, interpolation, confidence calibration and the ONNX graph.

`onnx_graph` holds the exported graph's contract (inputs, outputs, metadata), `export` writes and
checks a graph, `onnx_runtime` runs it (the Predictor's onnxruntime backend).
"""
