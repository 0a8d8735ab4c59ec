"""Does ASHA keep the configurations that win at the full horizon? Rank agreement between its rungs.

For each pair of consecutive milestones (ASHA's rungs, then the trials' last epoch), among the trials that trained
to both: the Kendall rank correlation of their validation accuracy at the two epochs, and whether the best trial
at the later one was in the top 1/eta at the earlier one (the fraction ASHA would have kept). A low correlation at
the first rung is ASHA's short-horizon bias: it would cut configurations that overtake later.
"""
from __future__ import annotations

import math

from trainables.config import METRIC


def _value_at(trial: dict, epoch: int):
    for row in trial.get("history") or []:
        if row.get("epoch") == epoch and row.get(METRIC) is not None:
            return row[METRIC]
    return None


def rung_agreement(trials: list[dict], milestones: list[int], reduction_factor: float) -> list[dict]:
    """One row per consecutive pair of ``milestones`` (ascending, the last being max_epochs)."""
    from scipy.stats import kendalltau

    rows = []
    for early, late in zip(milestones, milestones[1:]):
        pairs = [(t["trial_id"], _value_at(t, early), _value_at(t, late)) for t in trials]
        pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
        row = {"from_epoch": early, "to_epoch": late, "trials": len(pairs), "kendall_tau": None,
               "best_later_was_kept": None}
        if len(pairs) >= 2:
            tau = kendalltau([p[1] for p in pairs], [p[2] for p in pairs]).statistic
            row["kendall_tau"] = None if tau is None or math.isnan(tau) else round(float(tau), 3)
            best = max(pairs, key=lambda p: p[2])
            kept = max(1, math.ceil(len(pairs) / reduction_factor))
            top = sorted(pairs, key=lambda p: -p[1])[:kept]
            row["best_later_was_kept"] = best[0] in {p[0] for p in top}
        rows.append(row)
    return rows
