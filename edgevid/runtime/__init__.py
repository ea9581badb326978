"""edgevid.runtime: camera and file streams -> rolling buffer -> real-time classification.

Depends on numpy, OpenCV and ONNX Runtime only (TensorRT optional): never torch or
transformers, so it fits on a Jetson next to a camera.

    from edgevid.runtime import Classifier, stream
    Classifier("prune4.onnx").predict(frames)            # frames (N, H, W, 3) uint8 RGB
    for result in stream("/dev/video0", "prune4.onnx"):
        print(result.label, result.score)
    for result in stream(frame_generator, "prune4.onnx", fps=25, keep_frames=True):
        image = result.plot()                            # the frame, annotated (RGB)

docs/python-api.md is the guide; every name it shows is in ``__all__``.

The names below load on first use, so ``import edgevid.core.video`` (training uses it)
never pays for ONNX Runtime.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Classifier": "edgevid.runtime.classifier",
    "Prediction": "edgevid.runtime.classifier",
    "stream": "edgevid.runtime.streamer",
    "Streamer": "edgevid.runtime.streamer",
    "StreamConfig": "edgevid.runtime.streamer",
    "Result": "edgevid.runtime.streamer",
    "stream_events": "edgevid.runtime.streamer",
    "VideoPrediction": "edgevid.runtime.predict",
    "LabelScore": "edgevid.runtime.smoothing",
    "Segment": "edgevid.runtime.segments",
    "SegmentConfig": "edgevid.runtime.segments",
    "run_streams": "edgevid.runtime.run",
    "resolve_model": "edgevid.runtime.resolve",
    "open_source": "edgevid.runtime.capture",
    "CaptureConfig": "edgevid.runtime.capture",
    "SourceOptions": "edgevid.runtime.sources",
    "ClipBuffer": "edgevid.runtime.buffer",
    "load_backend": "edgevid.runtime.backends",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgevid.runtime' has no attribute {name!r}")
