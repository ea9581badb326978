"""edgevid.calib: INT8 calibration of ONNX graphs on real clips."""
