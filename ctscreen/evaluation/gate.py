"""The release gate: a retrained model (the challenger) becomes a release candidate only when, on the
same frozen test set as the current champion, it is not worse beyond set margins.

The gate's settings are the ``gate`` section of ``params.yaml``; its decision and every reason are
kept with the registered version, so a refused promotion explains itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class GatePolicy:
    auc_margin: float = 0.01  # the challenger's test AUC may be lower than the champion's by at most this
    min_sensitivity: float = 0.9  # floor for the challenger's sensitivity at its operating point
    site_margin: float = 0.1  # no site's AUC (or sensitivity / specificity) may fall by more than this
    max_ece: float | None = None  # when set, the challenger's expected calibration error on the test set must not exceed it
    auto_promote: bool = False  # move `champion` when the gate passes; otherwise an engineer promotes


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def decide(challenger: dict, champion: dict | None, policy: GatePolicy) -> GateDecision:
    """Both reports as ``screening_report`` writes them, on the same test set; no champion: first model."""
    reasons = []
    sensitivity = challenger.get("sensitivity")
    if sensitivity is None or sensitivity < policy.min_sensitivity:
        reasons.append(f"sensitivity {_fmt(sensitivity)} is below the floor {policy.min_sensitivity:.3f}")
    ece = (challenger.get("calibration") or {}).get("ece")
    if policy.max_ece is not None and (ece is None or ece > policy.max_ece):
        reasons.append(f"expected calibration error {_fmt(ece)} exceeds the bound {policy.max_ece:.3f}")
    if champion is None:
        return GateDecision(not reasons, reasons or ["no champion yet: the first model that meets the floor passes"])
    if challenger.get("auc") is None or (champion.get("auc") is not None and challenger["auc"] < champion["auc"] - policy.auc_margin):
        reasons.append(f"AUC {_fmt(challenger.get('auc'))} is below the champion's {_fmt(champion.get('auc'))} "
                       f"by more than {policy.auc_margin:.3f}")
    for site, theirs in sorted(champion.get("by_site", {}).items()):
        ours = challenger.get("by_site", {}).get(site)
        if ours is None:
            continue
        for metric in ("auc", "sensitivity", "specificity"):
            if ours.get(metric) is not None and theirs.get(metric) is not None and ours[metric] < theirs[metric] - policy.site_margin:
                reasons.append(f"site {site}: {metric} {ours[metric]:.3f} is below the champion's {theirs[metric]:.3f} "
                               f"by more than {policy.site_margin:.3f}")
    passed = not reasons
    return GateDecision(passed, reasons or [f"AUC {_fmt(challenger['auc'])} vs champion {_fmt(champion.get('auc'))}, "
                                            f"sensitivity {_fmt(sensitivity)}, no site worse beyond {policy.site_margin:.3f}"])


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
