"""Step 7: the challenger against the current champion on the same frozen test set. The challenger's
figures are the evaluate step's (the ones registered with it); the champion is evaluated here by
the same evaluator, so a grown or changed test set cannot flatter either."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gate(summary: str, manifest: Input[Dataset], assignment: Input[Dataset], cache: str, tracking_uri: str, policy: str) -> str:
    """Returns the decision as JSON: passed, reasons, the champion's version and both test reports."""
    import json
    import tempfile
    from pathlib import Path

    from ctscreen.evaluation.bundle_evaluation import evaluate_bundle
    from ctscreen.evaluation.gate import GatePolicy, decide
    from ctscreen.registry.models import CHAMPION, ModelRegistry
    from ctscreen.training.config import from_settings

    policy = from_settings(GatePolicy, json.loads(policy))
    test = {case for case, name in json.loads(Path(assignment.path).read_text()).items() if name == "test"}
    challenger = json.loads(summary)["test"].get("test")
    registry = ModelRegistry(tracking_uri)
    current = registry.alias(CHAMPION)
    champion = None
    if current is not None:
        with tempfile.TemporaryDirectory() as scratch:
            downloaded = registry.download(current.version, Path(scratch) / "champion-bundle")
            champion = evaluate_bundle(downloaded, manifest.path, Path(scratch) / "champion", cache, test, progress=False)
    decision = decide(challenger or {}, champion, policy)
    strip = lambda report: report and {k: v for k, v in report.items() if k not in ("scores", "roc_png", "reliability_png", "model")}  # noqa: E731
    return json.dumps({**decision.to_dict(), "auto_promote": policy.auto_promote, "champion_version": current.version if current else None,
                       "challenger_test": strip(challenger), "champion_test": strip(champion)}, default=str)
