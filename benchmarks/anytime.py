"""Anytime statistics of an HPO benchmark: what a search had found after spending so much, across seeds.

A search is a list of *events*, one per trained epoch of any of its trials, in the order they were reported:
``{"t": seconds since the search began, "value": validation accuracy (None for a diverged epoch), "params": ...}``.
From them:

* :func:`best_so_far` / :func:`hypervolume_so_far`: the anytime curve, one value per event (the k-th value is what
  the search had after spending k epochs); non-decreasing by construction;
* :func:`at_epochs` / :func:`at_times`: that curve read at a grid of budget points (epochs spent, or wall seconds);
* :func:`band`: median and interquartile range across seeds at each point;
* :func:`paired_test`: Wilcoxon signed-rank test of seed i of method A against seed i of method B;
* :func:`cost_to_reach` / :func:`half_cost`: epochs and seconds until a curve first reaches a target, and by when
  half of the seeds had.

Plain lists in, plain dicts out: no Ray, no torch (tests/test_anytime.py checks them on hand-made numbers).
"""
from __future__ import annotations

import math
from typing import Sequence

Curve = list  # one value (or None: nothing found yet) per event


def _ok(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def best_so_far(events: Sequence[dict]) -> Curve:
    """Best value after each event: a diverged epoch (value None or not finite) costs its epoch and counts for
    nothing; None until the first usable value."""
    out, best = [], None
    for e in events:
        v = e.get("value")
        if _ok(v) and (best is None or v > best):
            best = float(v)
        out.append(best)
    return out


def hypervolume_so_far(events: Sequence[dict], objectives, reference: Sequence[float]) -> Curve:
    """Hypervolume, at ``reference``, of the front of every (value, params, ...) point reported so far, normalised
    by the box from the best corner (accuracy 1, 0 for the rest) to the reference; after each event."""
    from trainables.objectives import hypervolume, pareto_indices, to_loss

    names, directions = [n for n, _ in objectives], [d for _, d in objectives]
    box = math.prod(abs(r - (-1.0 if d == "max" else 0.0)) for r, d in zip(reference, directions))
    out, front, last = [], [], None
    for e in events:
        point = {**e, names[0]: e.get("value")}
        loss = to_loss([point.get(n) for n in names], directions)
        if all(math.isfinite(x) for x in loss):
            pool = front + [loss]
            front = [pool[i] for i in pareto_indices(pool)]
            last = hypervolume(front, reference) / box
        out.append(last)
    return out


def at_epochs(curve: Curve, points: Sequence[int]) -> list:
    """The curve after ``p`` epochs for each point; a search that spent fewer than ``p`` keeps its last value (it
    had nothing more to show)."""
    return [(curve[min(p, len(curve)) - 1] if curve and p >= 1 else None) for p in points]


def at_times(times: Sequence[float], curve: Curve, points: Sequence[float]) -> list:
    """The curve at each wall time ``p``: its value after the last event at or before ``p`` (None before the
    first). ``times`` are the events' times, in order (non-decreasing)."""
    from bisect import bisect_right

    return [(curve[k - 1] if (k := bisect_right(times, p)) else None) for p in points]


def band(per_seed: Sequence[Sequence]) -> list[dict | None]:
    """Median, first and third quartile across seeds at each point (rows: seeds, columns: points); None at a point
    where any seed has no value yet (a band over fewer seeds would not be the same population)."""
    import numpy as np

    out = []
    for column in zip(*per_seed):
        if not column or any(v is None for v in column):
            out.append(None)
            continue
        q1, med, q3 = np.percentile(np.asarray(column, dtype=float), [25, 50, 75])
        out.append({"median": float(med), "q1": float(q1), "q3": float(q3), "n": len(column)})
    return out


def paired_test(a: Sequence, b: Sequence) -> dict:
    """Wilcoxon signed-rank test, two-sided, of ``a[i]`` against ``b[i]`` (seed i of one method against seed i of
    the other); pairs where either is None are dropped. Zero differences are dropped (Wilcoxon's rule); when
    nothing is left the methods are equal on every seed and ``p`` is 1. Returns n (pairs used), the median
    difference a - b, the statistic and p (None with fewer than one pair)."""
    import numpy as np
    from scipy.stats import wilcoxon

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return {"n": 0, "median_difference": None, "statistic": None, "p": None}
    diffs = [float(x) - float(y) for x, y in pairs]
    out = {"n": len(pairs), "median_difference": float(np.median(diffs))}
    if not any(diffs):
        return {**out, "statistic": None, "p": 1.0}
    result = wilcoxon(diffs, alternative="two-sided")
    return {**out, "statistic": float(result.statistic), "p": float(result.pvalue)}


def cost_to_reach(times: Sequence[float], curve: Curve, target: float) -> dict:
    """Epochs and seconds until the curve first reaches ``target``; None for both if it never does."""
    for k, v in enumerate(curve):
        if v is not None and v >= target:
            return {"epochs": k + 1, "seconds": float(times[k])}
    return {"epochs": None, "seconds": None}


def half_cost(costs: Sequence) -> float | None:
    """The cost by which half of the seeds (rounded up) had reached the target: the ceil(n/2)-th smallest, a seed
    that never reached it costing infinity; None when fewer than half reached it. (With an even number of seeds
    the plain median would average in a seed that never got there; and a target set at the median of some
    method's results is, by this rule, reached by that method.)"""
    values = sorted(math.inf if c is None else float(c) for c in costs)
    if not values:
        return None
    k = values[math.ceil(len(values) / 2) - 1]
    return None if math.isinf(k) else k


def epoch_points(budget: int, fractions=(1 / 8, 1 / 4, 1 / 2, 3 / 4, 1)) -> list[int]:
    """Budget points for the tables: these fractions of ``budget`` epochs, rounded up, each at least 1."""
    return sorted({max(1, math.ceil(budget * f)) for f in fractions})
