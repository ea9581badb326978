"""edgevid.export: one pure function per stage, TensorRT-samples style.

    torch_to_onnx(model, meta, onnx_path, opset, raw_input)   PyTorch -> FP32 ONNX (+ metadata)
    onnx_to_fp16(fp32_onnx, fp16_onnx)                        FP32 -> FP16 (LayerNorm, Softmax FP32)
    onnx_to_int8_static / onnx_to_int8_dynamic                in edgevid.calib.quantize
    verify_graph(onnx_path, torch_logits, clips)              ONNX Runtime vs PyTorch
    build_file(onnx, engine, plan_build(...), meta, cache)    ONNX -> TensorRT engine (+ parity)
    add_model(triton_repo, onnx_or_engine)                    -> Triton model repository
    export_model(ExportConfig)                                all of it: `edgevid export`

Precision lives in the ONNX graph, so every artefact can be checked with ONNX Runtime on a
CPU; a TensorRT engine is a thin compile step over the same graph.
"""
