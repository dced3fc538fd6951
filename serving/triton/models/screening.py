"""Triton Python-backend model: the release's entry point (BLS). One request carries one preprocessed
case; the pair runs exactly as ``ctscreen screen`` runs it (``ctscreen.inference.pair.run_pair``), its
two networks asked through Triton at this release's own version."""

import json
from pathlib import Path

import torch
import triton_python_backend_utils as pb_utils

from ctscreen.inference.pair import run_pair
from serving.triton.models.stub import input_array, output_array, quiet_dlpack, tensor

SEGMENTATION, CLASSIFICATION = "ctscreen-segmentation", "ctscreen-classification"
OVERLAP = 0.25  # ctscreen screen's default


class NetworkError(RuntimeError):
    """One of the release's networks answered a BLS request with an error: the case's request fails with it."""


def _network(name: str, version: int):
    """A predictor over CPU tensors that asks the release's network ``name`` by BLS."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        request = pb_utils.InferenceRequest(model_name=name, model_version=version, requested_output_names=["output"],
                                            inputs=[tensor("input", x.numpy())])
        response = request.exec()
        if response.has_error():
            raise NetworkError(f"{name} version {version}: {response.error().message()}")
        return torch.from_numpy(output_array(response, "output"))
    return predict


class TritonPythonModel:
    def initialize(self, args):
        quiet_dlpack()
        version = int(args["model_version"])
        bundle = json.loads((Path(args["model_repository"]) / args["model_version"] / "bundle" / "bundle.json").read_text())
        self.window = tuple(bundle["segmentation"]["patch_zyx"])
        self.input_zyx = tuple(bundle["classification"]["input_zyx"])
        self.segmenter, self.classifier = _network(SEGMENTATION, version), _network(CLASSIFICATION, version)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                image, lungs = input_array(request, "image"), input_array(request, "lung_mask")
                output = run_pair(self.segmenter, self.classifier, image, lungs, self.window, self.input_zyx, OVERLAP)
            except NetworkError as error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))))
                continue
            responses.append(pb_utils.InferenceResponse([
                tensor("lesion_probability", output.probability_map), tensor("covid_probability", [output.covid_probability]),
            ]))
        return responses
