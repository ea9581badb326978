"""edgevid.runtime: camera and file streams -> rolling buffer -> real-time classification.

Depends on numpy, OpenCV and ONNX Runtime only (TensorRT optional): never torch or
transformers, so it fits on a Jetson next to a camera.
"""
