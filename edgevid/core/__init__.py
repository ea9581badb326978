"""edgevid.core: the contracts every stage shares, in numpy + OpenCV only (no torch).

    meta        ModelMeta: what a model needs to be fed exactly as it was trained
    artifact    the model-file contract: input/output names and shapes, the sidecar, reading
    onnx_file   ONNX graphs: metadata inside (metadata_props) and beside (sidecar)
    video       decoding and writing video files (OpenCV)
    sampling    which frames of a clip the model sees
    preprocess  resize short side, center crop, normalise
    clips       the one evaluation clip: file -> prepared uint8 clip -> graph input
    manifest    folder-per-class datasets, their split and manifest

Imports nothing of edgevid but ``edgevid.errors``, ``edgevid._atomic`` and itself
(checked by tests/test_imports.py). Train, export, calib and runtime all build on it.
"""
