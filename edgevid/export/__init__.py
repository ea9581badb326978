"""edgevid.export: one pure function per stage, TensorRT-samples style.

    torch_to_onnx(model, meta, onnx_path)        PyTorch -> FP32 ONNX (+ metadata)

Precision lives in the ONNX graph, so every artefact can be checked with ONNX Runtime on a
CPU; a TensorRT engine is a thin compile step over the same graph.
"""
