"""edgevid: a video-transformer action classifier from training to real-time edge deployment.

The package is four stages, each a subpackage:

    edgevid.train    fine-tune / prune / evaluate (torch + transformers, extra ``train``)
    edgevid.export   ONNX, FP16 and TensorRT artefacts (extra ``export`` / ``trt``)
    edgevid.calib    INT8 calibration on real clips (extra ``export``)
    edgevid.runtime  streams -> rolling buffer -> classification (numpy, OpenCV, ONNX Runtime)

Importing ``edgevid`` itself is cheap and pulls in none of them. One call classifies a
video (torch-free: numpy, OpenCV, ONNX Runtime):

    import edgevid
    result = edgevid.predict("clip.mp4", "exports/prune4.onnx")
    print(result.label, result.score, result.segments)
"""

__version__ = "0.1.0"

__all__ = ["predict", "__version__"]


def __getattr__(name: str):
    if name == "predict":  # loaded on first use: `import edgevid` stays cheap
        from edgevid.runtime.predict import predict

        return predict
    raise AttributeError(f"module 'edgevid' has no attribute {name!r}")
