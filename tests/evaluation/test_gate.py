import pytest

from ctscreen.evaluation.gate import GatePolicy, decide
from ctscreen.training.config import load_section


def _report(auc, sensitivity, sites=None):
    return {"auc": auc, "sensitivity": sensitivity, "specificity": 0.9,
            "by_site": {name: {"auc": a, "sensitivity": s, "specificity": 0.9} for name, (a, s) in (sites or {}).items()}}


POLICY = GatePolicy(auc_margin=0.01, min_sensitivity=0.9, site_margin=0.05)


def test_first_model_passes_when_it_meets_the_sensitivity_floor():
    assert decide(_report(0.8, 0.95), None, POLICY).passed
    refused = decide(_report(0.99, 0.85), None, POLICY)
    assert not refused.passed and "below the floor 0.900" in refused.reasons[0]


@pytest.mark.parametrize("challenger, passed, reason", [
    (_report(0.945, 0.95, {"a": (0.9, 1.0), "b": (0.95, 0.9)}), True, "vs champion"),
    (_report(0.93, 0.95, {"a": (0.9, 1.0), "b": (0.95, 0.9)}), False, "AUC 0.930 is below the champion's 0.950"),
    (_report(0.96, 0.95, {"a": (0.84, 1.0), "b": (0.99, 0.9)}), False, "site a: auc 0.840"),
    (_report(0.96, 0.92, {"a": (0.9, 0.8), "b": (0.99, 0.9)}), False, "site a: sensitivity 0.800"),
])
def test_challenger_is_held_to_the_champion_overall_and_per_site(challenger, passed, reason):
    champion = _report(0.95, 0.95, {"a": (0.9, 0.9), "b": (0.95, 0.9)})
    decision = decide(challenger, champion, POLICY)
    assert decision.passed is passed
    assert any(reason in r for r in decision.reasons), decision.reasons


@pytest.mark.parametrize("ece, bound, passed", [(0.04, None, True), (0.04, 0.05, True), (0.08, 0.05, False), (None, 0.05, False)])
def test_an_optional_calibration_bound_holds_the_challenger_to_its_expected_calibration_error(ece, bound, passed):
    challenger = {**_report(0.95, 0.95), "calibration": {"ece": ece} if ece is not None else {}}
    decision = decide(challenger, None, GatePolicy(min_sensitivity=0.9, max_ece=bound))
    assert decision.passed is passed
    assert passed or any(f"calibration error {'n/a' if ece is None else f'{ece:.3f}'} exceeds the bound 0.050" in r for r in decision.reasons)


def test_gate_settings_come_from_params_yaml(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("gate:\n  min_sensitivity: 0.97\n")
    policy = load_section(GatePolicy, "gate", params, ["auto_promote=true", "max_ece=0.1"])
    assert policy.min_sensitivity == 0.97 and policy.auto_promote and policy.auc_margin == 0.01 and policy.max_ece == 0.1
