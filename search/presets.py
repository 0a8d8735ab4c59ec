"""One preset per seed report: the report's own hand-tuned runs as a grid, and a tuned search of equal budget.

A preset names the architectures a report trained, the grid it tried (a product of values, or explicit rows
when its runs were not a product), the settings it held constant, how long it trained and how many seeds per
point, and the numbers it published for each point, so an analysis can print ours beside them.

    >>> p = get_preset("report000")
    >>> len(expand_grid(p)), grid_cost(p)
    (5, 625)

Budget rule (:func:`tuned_plan`): a net's search spends at most a fifth of the epochs the report spent tuning it.
``B`` = the smallest, over the preset's nets, of that net's grid epochs (its configs' epochs x repeats) // 5, and
the scheduler enforces ``B`` per net (``epoch_budget``, see ``search/scheduler.py``), so even a search in which
ASHA stops nothing cannot spend more. A trial may train ``min(E, CONVERGED_EPOCHS)`` epochs (``E``: the grid's
longest run; the reports' 300 are far past where these nets stop improving); ASHA's grace period is a ninth of
that (rungs at g, 3g, 9g with reduction factor 3), and the trials are as many as the budget pays a first rung for,
at most ``MAX_TRIALS`` (24: enough for TPE to leave its random start-up). ``cifar-tune reproduce`` uses per-net
plans built on the same rule (``search/reproduce.py``).
"""
from __future__ import annotations

from trainables.models import get_arch  # noqa: F401 (the presets use it; kept for callers of search.presets)
from trainables.presets import (Preset, _points, expand_grid, get_preset, grid_runs,  # noqa: F401
                                labelled_grid, list_presets, point_label)

REDUCTION_FACTOR = 3  # ASHA keeps the top 1/3 at each rung
RUNGS_BELOW_MAX = 2  # grace period = max_epochs // REDUCTION_FACTOR**RUNGS_BELOW_MAX
BUDGET_FRACTION = 5  # a search spends at most 1/5 of the epochs the report spent tuning the net
MAX_TRIALS = 24  # per net: TPE's random start-up is 5, so 24 leaves it ~19 informed suggestions
CONVERGED_EPOCHS = 50  # the small nets' validation accuracy is within a point of its plateau by then


def grid_cost(preset: Preset) -> int:
    """Total training epochs of the grid: sum over configs of epochs x repeats (= points x repeats x epochs)."""
    return sum(config["epochs"] for config in expand_grid(preset)) * preset.repeats


def arch_grid_cost(preset: Preset) -> dict[str, int]:
    """Epochs the report spent on each net: its configs' epochs x repeats."""
    out: dict[str, int] = {}
    for config in expand_grid(preset):
        out[config["arch"]] = out.get(config["arch"], 0) + config["epochs"] * preset.repeats
    return out


def tuned_plan(preset: Preset) -> dict:
    """TPE + ASHA plan whose search spends at most 1/5 of the report's tuning epochs per net (rule: module doc).

    ``num_samples``, ``max_epochs``, ``grace_period`` and ``epoch_budget`` apply to each arch alike; ``settings``
    are the run settings the search must share with the grid.
    """
    configs = expand_grid(preset)
    per_arch = arch_grid_cost(preset)
    archs = list(per_arch)
    budget = max(1, min(per_arch.values()) // BUDGET_FRACTION)
    max_epochs = min(max(c["epochs"] for c in configs), CONVERGED_EPOCHS)
    grace = min(max(1, max_epochs // REDUCTION_FACTOR ** RUNGS_BELOW_MAX), budget)
    num_samples = max(1, min(MAX_TRIALS, budget // grace))
    return {"archs": archs, "num_samples": num_samples, "max_epochs": max_epochs, "grace_period": grace,
            "reduction_factor": REDUCTION_FACTOR, "epoch_budget": budget, "settings": dict(preset.settings),
            "worst_case_epochs": budget * len(archs), "grid_epochs": grid_cost(preset),
            "grid_epochs_per_arch": per_arch}
