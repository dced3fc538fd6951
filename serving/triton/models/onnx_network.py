"""Triton Python-backend model: one of the bundle's ONNX graphs under ONNX Runtime, in the same
session settings as in-process screening (``ctscreen.inference.sliding_window.onnx_session``), so
both compute the same numbers. Used where Triton has no native onnxruntime backend (the CPU build)."""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from ctscreen.inference.onnx_runtime import onnx_session
from serving.triton.models.stub import input_array, quiet_dlpack, tensor


class TritonPythonModel:
    def initialize(self, args):
        quiet_dlpack()
        folder = Path(args["model_repository"]) / args["model_version"]
        self.session = onnx_session(folder / "model.onnx")

    def execute(self, requests):
        # dynamic batching hands over several requests at once: one ONNX Runtime call for all of them
        inputs = [input_array(r, "input") for r in requests]
        sizes = [len(x) for x in inputs]
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        outputs = self.session.run(["output"], {"input": np.ascontiguousarray(batch, dtype=np.float32)})[0]
        split = np.split(outputs, np.cumsum(sizes)[:-1])
        return [pb_utils.InferenceResponse([tensor("output", y)]) for y in split]
