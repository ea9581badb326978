"""edgevid: a video-transformer action classifier from training to real-time edge deployment.

The package is four stages, each a subpackage:

    edgevid.train    fine-tune / prune / evaluate (torch + transformers, extra ``train``)
    edgevid.export   ONNX, FP16 and TensorRT artefacts (extra ``export`` / ``trt``)
    edgevid.calib    INT8 calibration on real clips (extra ``export``)
    edgevid.runtime  streams -> rolling buffer -> classification (numpy, OpenCV, ONNX Runtime)

Importing ``edgevid`` itself is cheap and pulls in none of them.
"""

__version__ = "0.1.0"
