"""The objectives a size-aware search may optimise, and the Pareto arithmetic over them.

Every trial reports these metrics (``trainables.train``); ``cifar-tune search --objectives val_accuracy:max,params:min``
picks two or more of them. The search (study directions, MO-ASHA) and the analysis (Pareto table, hypervolume) both
need the names, their directions and the ranking, so they live here, below both.

Ranking is non-dominated sorting into fronts, then, within a front, one of two orders (``RANKINGS``):
``"hypervolume"`` (each member's exclusive hypervolume contribution, objectives scaled to the population's range:
a front's knees first, its far ends last) or ``"crowding"`` (NSGA-II's crowding distance: boundary points first).
Values are turned into "smaller is better" by :func:`to_loss` before any comparison.

>>> parse_objectives("val_accuracy:max,params:min")
[('val_accuracy', 'max'), ('params', 'min')]
>>> hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0])
3.0
"""
from __future__ import annotations

import math
from typing import Sequence

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
RANKINGS = ("hypervolume", "crowding")  # the order within a front: rank_order(by=...)
REFERENCE_MARGIN = 0.1  # hypervolume ranking: the reference point sits this far beyond the scaled worst values


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


def hypervolume_contributions(losses: Sequence[Sequence[float]], front: Sequence[int]) -> dict[int, float]:
    """Each member of ``front`` (mutually non-dominated, finite): the hypervolume only it dominates, with every
    objective scaled to [0, 1] over ``losses`` (the whole population) and the reference point at
    ``1 + REFERENCE_MARGIN`` in each. A far end of the front (best in one objective, worst in another) adds a thin
    slab, a knee a large box; duplicates add nothing. Exact: two objectives by the sorted-staircase formula, more by
    differences of :func:`hypervolume`."""
    k = len(losses[front[0]]) if front else 0
    low = [min(p[j] for p in losses) for j in range(k)]
    high = [max(p[j] for p in losses) for j in range(k)]
    scaled = {i: [(losses[i][j] - low[j]) / (high[j] - low[j]) if high[j] > low[j] else 0.0 for j in range(k)]
              for i in front}
    ref = [1.0 + REFERENCE_MARGIN] * k
    if k != 2:
        total = hypervolume(list(scaled.values()), ref)
        return {i: total - hypervolume([scaled[j] for j in front if j != i], ref) for i in front}
    order = sorted(front, key=lambda i: (scaled[i][0], scaled[i][1]))  # first objective up, so the second goes down
    out = {}
    for n, i in enumerate(order):
        x, y = scaled[i]
        right = scaled[order[n + 1]][0] if n + 1 < len(order) else ref[0]
        above = scaled[order[n - 1]][1] if n > 0 else ref[1]
        out[i] = max(0.0, right - x) * max(0.0, above - y)
    return out


def rank_order(losses: Sequence[Sequence[float]], prefer: int | None = None, by: str = "crowding") -> list[int]:
    """Indices best first: by front, then within a front by ``by`` (``RANKINGS``: hypervolume contribution or
    crowding distance, larger first); exact ties go to ``prefer``, then to the lower index. A point with a missing
    or NaN value (an infinite loss) ranks after every complete one, however good its other values: a run without an
    accuracy is no trade-off."""
    if by not in RANKINGS:
        raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}, got {by!r}")
    key = {}
    complete = [i for i, v in enumerate(losses) if all(math.isfinite(x) for x in v)]
    incomplete = [i for i in range(len(losses)) if i not in set(complete)]
    offset = 0
    for group in (complete, incomplete):
        sub = [losses[i] for i in group]
        fronts = nondominated_fronts(sub)
        for f, front in enumerate(fronts):
            if by == "hypervolume" and group is complete:
                score = hypervolume_contributions(sub, front)
            else:  # incomplete points: infinite losses cannot be scaled; crowding orders them as before
                score = crowding_distances(sub, front)
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
