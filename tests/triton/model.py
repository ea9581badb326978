"""Triton Python-backend model for the tests: runs the version folder's ``model.onnx``
through ONNX Runtime (the onnxruntime backend library ships only in NVIDIA's containers).

The test copies this file to ``<model>/1/model.py`` of a repository written by
``edgevid export --triton`` and swaps its ``backend:`` to ``python``. Triton's dynamic
batcher hands ``execute`` several requests at once: they run as one ONNX Runtime batch.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests):
        # as_numpy() is unusable under numpy 2 as well (stub built for numpy 1): DLPack
        tensors = [pb_utils.get_input_tensor_by_name(r, self.input_name) for r in requests]
        clips = [np.from_dlpack(t) for t in tensors]
        logits = self.session.run([self.output_name], {self.input_name: np.concatenate(clips)})[0]
        responses, start = [], 0
        for x in clips:  # each request gets its own rows back
            rows = np.ascontiguousarray(logits[start : start + len(x)])
            # pb_utils.Tensor(name, ndarray) sends empty data under numpy 2 (the stub was
            # built for numpy 1); DLPack carries it (the stub then logs a harmless
            # "PyCapsule_GetPointer called with incorrect name" per response).
            out = pb_utils.Tensor.from_dlpack(self.output_name, rows)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += len(x)
        return responses
