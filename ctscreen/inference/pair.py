"""The screening pair's arithmetic, written once for every place that runs it — training's
validation, evaluation, ``ctscreen screen`` and the Triton entry model: the classifier's two-channel
input, its COVID-19 scores, the lesion rule, and the whole pair on one preprocessed case."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ctscreen.inference.predictor import PairOutput
from ctscreen.inference.sliding_window import Predictor, lesion_probability

# A voxel is a lesion when the segmenter's lesion probability exceeds this and it lies in the lung region.
LESION_PROBABILITY = 0.5



def lesion_mask(probability_map: np.ndarray, lung_mask: np.ndarray) -> np.ndarray:
    """The lesion rule: confident lesion voxels inside the lung region (boolean, the map's shape)."""
    return (probability_map > LESION_PROBABILITY) & (lung_mask > 0)


def classifier_input(image: np.ndarray, lesion_probability_map: np.ndarray, lung_mask: np.ndarray,
                     size_zyx: tuple[int, int, int]) -> torch.Tensor:
    """(2, D, H, W): the lesion region and its predicted mask, resized together to the model's input.

    Lesions lie in the lungs: what the segmenter finds outside them (heart, chest wall) is left out,
    as the predicted lesion masks everywhere else are.
    """
    lesions = lesion_probability_map * (lung_mask > 0)
    stacked = torch.from_numpy(np.stack([image, lesions]).astype(np.float32))[None]
    return F.interpolate(stacked, size=tuple(size_zyx), mode="trilinear", align_corners=False)[0]


def covid_scores(classifier, inputs: torch.Tensor, batch: int = 8) -> np.ndarray:
    """COVID-19 probabilities of a batch of classifier inputs (a module, on its own device, or an ONNX predictor)."""
    device = next(classifier.parameters()).device if isinstance(classifier, torch.nn.Module) else torch.device("cpu")
    with torch.no_grad():
        return np.concatenate([torch.sigmoid(classifier(inputs[i : i + batch].to(device)).float()).reshape(-1).cpu().numpy()
                               for i in range(0, len(inputs), batch)])


def run_pair(segmenter, classifier: Predictor, image: np.ndarray, lung_mask: np.ndarray, window_zyx: tuple[int, int, int],
             input_zyx: tuple[int, int, int], overlap: float = 0.25, batch_size: int = 1) -> PairOutput:
    """The pair on one preprocessed case: the lesion probability map and the COVID-19 probability of
    the classifier fed with it."""
    start = time.perf_counter()
    probability_map = lesion_probability(segmenter, image, window_zyx, overlap=overlap, batch_size=batch_size)
    segmented = time.perf_counter()
    probability = float(covid_scores(classifier, classifier_input(image, probability_map, lung_mask, input_zyx)[None])[0])
    return PairOutput(probability_map, probability,
                      {"segment": round(segmented - start, 3), "classify": round(time.perf_counter() - segmented, 3)})
