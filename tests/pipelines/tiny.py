"""The tiny pipeline settings the pipeline tests share."""

from tests.tiny_lungs import TINY_LUNGS

TINY = ["spacing_zyx=[5.0, 4.0, 4.0]", "segmentation.profile=tiny", "classification.profile=tiny", "segmentation.optimiser.epochs=2",
        "segmentation.samples_per_case=1", "classification.optimiser.epochs=2", "evaluation.bootstrap_resamples=50"]
# adopted from a validation lung Dice of 0.5 on, whatever share of lesions it keeps: the pipeline's tiny cases are few;
# eight of them for eight epochs (more steps than TINY_LUNGS's fifteen epochs on three cases)
LUNGS = [*TINY_LUNGS, "optimiser.epochs=8", "max_cases=8", "adopt_min_dice=0.5", "adopt_min_lesion_inside=0.0"]
PROMOTE = ["min_sensitivity=0.0", "auto_promote=true"]
MODELS = {"segmentation_models": ["fcn8s", "unet"], "classification_models": ["resnet50", "inception_v3"]}


def run_folders(root) -> list:
    return sorted((root / "home" / "pipeline-root").glob("ctscreen-retrain-*"))  # named by start time
