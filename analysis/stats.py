"""The statistics the tables print: a t-interval for a mean over seeds, and a paired comparison of two nets.

    >>> r = mean_ci([0.70, 0.71, 0.72])
    >>> round(r["mean"], 3), [round(v, 4) for v in r["ci95"]]
    (0.71, [0.6852, 0.7348])
    >>> verdict(r, 0.68), verdict(r, 0.728), verdict(r, 0.74), verdict(mean_ci([0.9]), 0.5)
    ('beats', 'matches', 'misses', 'single run')
"""
from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95
VERDICTS = ("beats", "matches", "misses", "single run")


def mean_ci(values, confidence: float = CONFIDENCE) -> dict:
    """Mean and two-sided Student-t interval of ``values`` (scipy.stats.t); one value has no interval.

    Returns ``{"mean", "ci95": [low, high] | None, "n", "std", "values"}``.
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if len(x) == 0:
        return {"mean": None, "ci95": None, "n": 0, "std": None, "values": []}
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "ci95": None, "n": 1, "std": None, "values": x.tolist()}
    sem = float(stats.sem(x))
    lo, hi = (mean, mean) if sem == 0 else stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sem)
    return {"mean": mean, "ci95": [float(lo), float(hi)], "n": int(len(x)), "std": float(x.std(ddof=1)),
            "values": x.tolist()}


def paired_comparison(a: dict[int, float], b: dict[int, float], names: tuple[str, str] = ("a", "b")) -> dict:
    """Paired t-test (scipy.stats.ttest_rel) of two nets' test accuracies over the seeds both ran.

    ``a`` and ``b`` map seed -> accuracy. The difference is ``a - b``; its mean comes with a t-interval.
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    out = {"a": names[0], "b": names[1], "seeds": seeds, "n": len(seeds)}
    if len(seeds) < 2:
        return {**out, "note": f"a paired test needs at least 2 common seeds, got {len(seeds)}"}
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    diff = mean_ci(x - y)
    if np.allclose(x - y, (x - y)[0]):  # no spread in the differences: t is undefined
        return {**out, "mean_difference": diff["mean"], "difference_ci95": diff["ci95"], "t": None, "p_value": None,
                "note": "identical differences over seeds: no t statistic"}
    res = stats.ttest_rel(x, y)
    return {**out, "mean_difference": diff["mean"], "difference_ci95": diff["ci95"], "t": float(res.statistic),
            "p_value": float(res.pvalue)}


def verdict(summary: dict, target: float, higher_is_better: bool = True) -> str:
    """Ours against a published number, read from the 95% interval of ``summary`` (a :func:`mean_ci` result).

    *beats*: the whole interval is on the better side of ``target`` (lower bound above it, for a metric to
    maximise); *misses*: the whole interval is on the worse side; *matches*: the interval contains it (a mean above
    the target with the interval across it only matches). One seed has no interval: *single run*, whatever its value.
    """
    ci = summary.get("ci95")
    if ci is None or summary.get("n", 0) < 2:
        return "single run"
    low, high = (float(ci[0]), float(ci[1])) if higher_is_better else (-float(ci[1]), -float(ci[0]))
    target = float(target) if higher_is_better else -float(target)
    if low > target:
        return "beats"
    if high < target:
        return "misses"
    return "matches"
