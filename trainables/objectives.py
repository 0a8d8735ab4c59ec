"""The objectives a size-aware search may optimise, and the Pareto arithmetic over them.

Every trial reports these metrics (``trainables.train``); ``cifar-tune search --objectives val_accuracy:max,params:min``
picks two or more of them. The search (study directions, MO-ASHA) and the analysis (Pareto table, hypervolume) both
need the names, their directions and the ranking, so they live here, below both.

Ranking is non-dominated sorting into fronts, then, within a front, one of two orders (``RANKINGS``):
``"hypervolume"`` (each member's exclusive contribution to the hypervolume the analysis reports, at the same kind of
reference point, :func:`reference_point`) or ``"crowding"`` (NSGA-II's crowding distance: boundary points first).
Values are turned into "smaller is better" by :func:`to_loss` before any comparison.

>>> parse_objectives("val_accuracy:max,params:min")
[('val_accuracy', 'max'), ('params', 'min')]
>>> hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0])
3.0
"""
from __future__ import annotations

import math
from typing import Sequence

from trainables.config import METRIC  # val_accuracy: its reference is 0

# metric -> (natural direction, what it is)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "val_accuracy": ("max", "accuracy on the validation split"),
    "val_loss": ("min", "cross-entropy on the validation split"),
    "params": ("min", "trainable parameters"),
    "size_mb": ("min", "MB of the weights and buffers (float32 as trained)"),
    "inference_latency_ms": ("min", "ms per image at batch 1, trial's device"),
    "inference_images_per_s_b1": ("max", "images/s at batch 1, trial's device"),
    "inference_images_per_s": ("max", "images/s at batch latency_batch, trial's device"),
}
MEASURED = ("inference_latency_ms", "inference_images_per_s_b1", "inference_images_per_s")  # need latency_batch > 0
DIRECTIONS = ("max", "min")
DEFAULT_RANKING = "hypervolume"  # MO-ASHA's rule unless told otherwise (spec, scheduler, CLI, size_front)
RANKINGS = (DEFAULT_RANKING, "crowding")  # the order within a front: rank_order(by=...)
SLACK = 0.1  # reference point: each objective's worst value pushed this fraction further out (accuracy: 0)


class ObjectiveError(ValueError):
    """An --objectives value names an unknown metric or direction; the message names it."""


def parse_objectives(text: str | Sequence) -> list[tuple[str, str]]:
    """``"val_accuracy:max,params:min"`` (or a list of such items / pairs) -> ``[(metric, direction), ...]``.

    A direction may be left out (``params`` = ``params:min``): each metric's natural one is taken. At least two
    distinct metrics; anything unknown raises :class:`ObjectiveError` naming it.
    """
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            name, direction = (list(item) + [""])[:2]
        else:
            if not item:
                continue
            name, _, direction = item.partition(":")
        name, direction = str(name).strip(), str(direction).strip().lower()
        if name not in OBJECTIVES:
            raise ObjectiveError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
        direction = direction or OBJECTIVES[name][0]
        if direction not in DIRECTIONS:
            raise ObjectiveError(f"objective {name}: direction must be max or min, got {direction!r}")
        if any(name == n for n, _ in out):
            raise ObjectiveError(f"objective {name} is listed twice")
        out.append((name, direction))
    if len(out) < 2:
        raise ObjectiveError(f"a multi-objective search needs at least two objectives, got {len(out)} "
                             f"({','.join(n for n, _ in out) or 'none'})")
    return out


def to_loss(values: Sequence[float], directions: Sequence[str]) -> list[float]:
    """Values as "smaller is better" (max objectives negated); a missing or NaN value is the worst (+inf)."""
    out = []
    for v, d in zip(values, directions):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(math.inf)
        else:
            out.append(-float(v) if d == "max" else float(v))
    return out


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Loss vector ``a`` dominates ``b``: no worse anywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_fronts(losses: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices grouped into fronts (front 0 = the Pareto set), by repeated peeling. O(n^2) per front: rung
    populations and trial counts here are in the hundreds at most."""
    left = list(range(len(losses)))
    fronts = []
    while left:
        front = [i for i in left if not any(dominates(losses[j], losses[i]) for j in left if j != i)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def crowding_distances(losses: Sequence[Sequence[float]], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each member of ``front``: boundary points inf, else the normalised sum of the
    gaps between each member's neighbours, objective by objective."""
    dist = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for k in range(len(losses[front[0]])):
        order = sorted(front, key=lambda i: losses[i][k])
        low, high = losses[order[0]][k], losses[order[-1]][k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if not math.isfinite(high - low) or high == low:
            continue
        for prev, mid, nxt in zip(order, order[1:], order[2:]):
            dist[mid] += (losses[nxt][k] - losses[prev][k]) / (high - low)
    return dist


def reference_point(losses: Sequence[Sequence[float]], names: Sequence[str]) -> list[float]:
    """The hypervolume reference point for ``losses`` (finite, "smaller is better") of the objectives ``names``:
    accuracy 0 (the worst it can be), every other objective its worst value pushed ``SLACK`` further out. The rung
    ranking and the analysis (``analysis.pareto``) both take it from here."""
    ref = []
    for k, name in enumerate(names):
        if name == METRIC:
            ref.append(0.0)
            continue
        worst = max((p[k] for p in losses), default=1.0)
        ref.append(worst + SLACK * abs(worst) if worst else 1e-12)
    return ref


def hypervolume_contributions(losses: Sequence[Sequence[float]], front: Sequence[int],
                              reference: Sequence[float]) -> dict[int, float]:
    """Each member of ``front`` (mutually non-dominated, finite): the hypervolume only it dominates, bounded by
    ``reference``. With accuracy against size, a small net's box reaches down to accuracy 0 and the largest net's
    only to the reference size, so a small net that is accurate for its size counts for much, the largest for its
    margin over the next; duplicates add nothing. Exact: two objectives by the sorted-staircase formula, more by
    differences of :func:`hypervolume`."""
    ref = [float(r) for r in reference]
    if len(ref) != 2:
        total = hypervolume([losses[i] for i in front], ref)
        return {i: total - hypervolume([losses[j] for j in front if j != i], ref) for i in front}
    order = sorted(front, key=lambda i: (losses[i][0], losses[i][1]))  # first objective up, so the second goes down
    out = {}
    for n, i in enumerate(order):
        x, y = losses[i]
        right = losses[order[n + 1]][0] if n + 1 < len(order) else ref[0]
        above = losses[order[n - 1]][1] if n > 0 else ref[1]
        out[i] = max(0.0, min(right, ref[0]) - x) * max(0.0, min(above, ref[1]) - y)
    return out


def rank_order(losses: Sequence[Sequence[float]], prefer: int | None = None, by: str = "crowding",
               names: Sequence[str] | None = None, reference: Sequence[float] | None = None) -> list[int]:
    """Indices best first: by front, then within a front by ``by`` (``RANKINGS``: hypervolume contribution at
    ``reference``, by default :func:`reference_point` of the complete points with ``names`` naming the objectives,
    or crowding distance; larger first); exact ties go to ``prefer``, then to the lower index. A point with a
    missing or NaN value (an infinite loss) ranks after every complete one, however good its other values: a run
    without an accuracy is no trade-off."""
    if by not in RANKINGS:
        raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}, got {by!r}")
    key = {}
    complete = [i for i, v in enumerate(losses) if all(math.isfinite(x) for x in v)]
    incomplete = sorted(set(range(len(losses))) - set(complete))
    offset = 0
    for group in (complete, incomplete):
        sub = [losses[i] for i in group]
        fronts = nondominated_fronts(sub)
        by_volume = by == "hypervolume" and group is complete and sub  # infinite losses have no volume: crowding
        if by_volume:
            ref = reference if reference is not None else reference_point(sub, names or [""] * len(sub[0]))
        for f, front in enumerate(fronts):
            score = hypervolume_contributions(sub, front, ref) if by_volume else crowding_distances(sub, front)
            for j in front:
                i = group[j]
                key[i] = (offset + f, -score[j], 0 if i == prefer else 1, i)
        offset += len(fronts)
    return sorted(range(len(losses)), key=key.__getitem__)


def pareto_indices(losses: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (duplicates of a front point are all kept)."""
    return nondominated_fronts(losses)[0] if losses else []


def hypervolume(losses: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``losses`` (smaller is better) and bounded by ``reference``; points not strictly better
    than the reference in every objective add nothing. Exact, by slicing along the last objective (fine for the
    few objectives and the hundreds of points a search has)."""
    ref = [float(r) for r in reference]
    pts = [list(map(float, p)) for p in losses if all(x < r for x, r in zip(p, ref))]
    if not pts:
        return 0.0
    pts = [pts[i] for i in pareto_indices(pts)]
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    pts.sort(key=lambda p: p[-1])
    volume = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            volume += (upper - p[-1]) * hypervolume([q[:-1] for q in pts[:i + 1]], ref[:-1])
    return volume
