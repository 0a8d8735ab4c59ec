"""One preset per seed report: the report's own hand-tuned runs as a grid, and a tuned search of equal budget.

A preset names the architectures a report trained, the grid it tried (a product of values, or explicit rows
when its runs were not a product), the settings it held constant, how long it trained and how many seeds per
point, and the numbers it published for each point, so an analysis can print ours beside them.

    >>> p = get_preset("report000")
    >>> len(expand_grid(p)), grid_cost(p)
    (9, 1125)

Budget rule (:func:`tuned_plan`): the grid costs ``G`` epochs in all (every config's epochs x repeats) over
``A`` archs, and its longest run trains ``E`` epochs. The tuned search runs ``num_samples = G // (A x E)``
trials per arch, each allowed up to ``E`` epochs, so even if ASHA stopped nothing its worst case
``num_samples x E x A`` is at most ``G``; ASHA's early stopping is the saving on top. When the grid cannot pay
for one full-length trial per arch (report 004: one short run per model), each arch gets one trial capped at
``G // A`` epochs. ASHA uses reduction factor 3 and grace period ``max(1, E // 9)``, which leaves two rungs
below ``E`` (e.g. 2, 6, 18 for 25 epochs): a trial must survive two cuts to a third before it trains to the end.
"""
from __future__ import annotations

from trainables.models import get_arch  # noqa: F401 (the presets use it; kept for callers of search.presets)
from trainables.presets import (Preset, _points, expand_grid, get_preset, grid_runs,  # noqa: F401
                                labelled_grid, list_presets, point_label)

REDUCTION_FACTOR = 3  # ASHA keeps the top 1/3 at each rung
RUNGS_BELOW_MAX = 2  # grace period = max_epochs // REDUCTION_FACTOR**RUNGS_BELOW_MAX


def grid_cost(preset: Preset) -> int:
    """Total training epochs of the grid: sum over configs of epochs x repeats (= points x repeats x epochs)."""
    return sum(config["epochs"] for config in expand_grid(preset)) * preset.repeats


def tuned_plan(preset: Preset) -> dict:
    """TPE + ASHA budget whose worst case (no early stops) costs no more epochs than the grid.

    ``num_samples``, ``max_epochs`` and ``grace_period`` apply to each arch alike; ``settings`` are the run
    settings the search must share with the grid. The rule is in the module docstring.
    """
    configs = expand_grid(preset)
    archs = list(dict.fromkeys(c["arch"] for c in configs))
    grid_epochs, longest = grid_cost(preset), max(c["epochs"] for c in configs)
    num_samples = grid_epochs // (len(archs) * longest)
    max_epochs = longest
    if num_samples == 0:
        num_samples, max_epochs = 1, grid_epochs // len(archs)
    return {"archs": archs, "num_samples": num_samples, "max_epochs": max_epochs,
            "grace_period": max(1, max_epochs // REDUCTION_FACTOR ** RUNGS_BELOW_MAX),
            "reduction_factor": REDUCTION_FACTOR, "settings": dict(preset.settings),
            "worst_case_epochs": num_samples * max_epochs * len(archs), "grid_epochs": grid_epochs}
