"""The Pareto front of an experiment and its hypervolume over time (issue 11).

The objectives are the experiment's own (``spec.objectives``, e.g. ``val_accuracy:max,params:min``); a
single-objective experiment is read as accuracy against parameters, the trade-off report 003 tabulates. Front
members are *completed* trials only: a trial stopped early has an accuracy at fewer epochs, which is not comparable
with a finished one (the search already ranked it, at its rung, against trials with the same epochs).

Hypervolume is measured in "smaller is better" space (accuracy negated) against a reference point that is printed
with it: accuracy 0, and for every other objective the worst completed value pushed 10% further out. Two
experiments are only comparable at the same reference point: pass ``reference=`` (e.g. one computed over both).

>>> from trainables.objectives import hypervolume
>>> round(hypervolume([[-0.7, 10.0], [-0.5, 5.0]], [0.0, 11.0]), 6)   # accuracy 0.7 at 10 params, 0.5 at 5
3.2
"""
from __future__ import annotations

import math

import pandas as pd

from analysis.load import Experiment
from trainables.config import METRIC
from trainables.objectives import OBJECTIVES, hypervolume, parse_objectives, pareto_indices, to_loss
from trainables.objectives import reference_point as _loss_reference

DEFAULT_OBJECTIVES = [(METRIC, "max"), ("params", "min")]
# What the table shows for every member, whatever the objectives were.
COLUMNS = (METRIC, "params", "size_mb", "inference_latency_ms", "inference_images_per_s_b1", "inference_images_per_s")


def objectives_of(record: dict) -> list[tuple[str, str]]:
    """The experiment's objectives from its spec.json record (accuracy vs parameters when it had none)."""
    given = (record.get("spec") or {}).get("objectives")
    return parse_objectives(given) if given else list(DEFAULT_OBJECTIVES)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _usable(trial: dict, names: list[str]) -> bool:
    return trial["status"] == "completed" and all(_finite(trial.get(n)) for n in names)


def candidates(trials: list[dict], objectives) -> list[dict]:
    """Completed trials with every objective value present, in completion order."""
    names = [n for n, _ in objectives]
    usable = [t for t in trials if _usable(t, names)]
    return sorted(usable, key=lambda t: (t.get("finished_at") or math.inf, t["trial_id"]))


def front(trials: list[dict], objectives) -> list[dict]:
    """The non-dominated completed trials, best first by the first objective."""
    pool = candidates(trials, objectives)
    directions = [d for _, d in objectives]
    losses = [to_loss([t[n] for n, _ in objectives], directions) for t in pool]
    members = [pool[i] for i in pareto_indices(losses)]
    first, direction = objectives[0]
    return sorted(members, key=lambda t: -t[first] if direction == "max" else t[first])


def reference_point(trials: list[dict], objectives) -> list[float]:
    """Accuracy 0 (the worst it can be); every other objective: its worst completed value, 10% further out (the
    rule of ``trainables.objectives.reference_point``, which MO-ASHA's hypervolume ranking uses too)."""
    directions = [d for _, d in objectives]
    losses = [to_loss([t[n] for n, _ in objectives], directions) for t in candidates(trials, objectives)]
    return _loss_reference(losses, [n for n, _ in objectives])


def common_reference(trial_lists: list[list[dict]], objectives) -> list[float]:
    """One reference point for several experiments (e.g. TPE vs random): the rule of :func:`reference_point`
    applied to all their completed trials together, so their hypervolumes can be compared."""
    return reference_point([t for trials in trial_lists for t in trials], objectives)


def compare(exp_dirs: list, reference=None) -> list[dict]:
    """Final hypervolume and front size of several experiments with the same objectives, at one reference point."""
    from analysis.load import load_spec, load_trials

    records = [load_spec(d) for d in exp_dirs]
    objectives = objectives_of(records[0])
    if any(objectives_of(r) != objectives for r in records):
        raise ValueError("experiments with different objectives cannot share a hypervolume")
    trial_lists = [load_trials(d) for d in exp_dirs]
    ref = list(reference) if reference is not None else common_reference(trial_lists, objectives)
    out = []
    for d, record, trials in zip(exp_dirs, records, trial_lists):
        summary = pareto_summary(record, trials, ref)
        out.append({"experiment": str(d), "sampler": record["spec"].get("sampler"), "seed": record["spec"].get("seed"),
                    "completed": len(candidates(trials, objectives)), "front": len(summary["pareto"]),
                    "hypervolume": summary["hypervolume"]["final"], "reference": ref})
    return out


def hypervolume_history(trials: list[dict], objectives, reference=None) -> list[dict]:
    """Hypervolume of the front of the first n completed trials, for n = 1, 2, ... (completion order)."""
    ref = list(reference) if reference is not None else reference_point(trials, objectives)
    directions = [d for _, d in objectives]
    losses, out = [], []
    for n, t in enumerate(candidates(trials, objectives), start=1):
        losses.append(to_loss([t[name] for name, _ in objectives], directions))
        out.append({"completed": n, "trial_id": t["trial_id"], "arch": t["arch"], "finished_at": t.get("finished_at"),
                    "hypervolume": hypervolume(losses, ref)})
    return out


def hypervolume_at_epoch(trials: list[dict], objectives, epoch: int, reference) -> dict:
    """Hypervolume of every trial that trained ``epoch`` epochs, stopped ones included, each at its values after that
    epoch (per-epoch metrics from its history, fixed ones such as params from the trial). Samplers compared at equal
    fidelity: the final hypervolume sees only the few trials an epoch budget lets finish, which can be the same
    start-up draws for two samplers with one seed."""
    names, directions = [n for n, _ in objectives], [d for _, d in objectives]
    losses = []
    for t in trials:
        row = next((h for h in t.get("history") or [] if h.get("epoch") == epoch), None)
        if row is None:
            continue
        values = [row.get(n, t.get(n)) for n in names]
        if all(map(_finite, values)):
            losses.append(to_loss(values, directions))
    return {"epoch": epoch, "trials": len(losses), "hypervolume": hypervolume(losses, reference) if losses else 0.0}


def member_record(t: dict) -> dict:
    return {"trial_id": t["trial_id"], "arch": t["arch"], "epochs": t["epochs"], "config": t["config"],
            **{c: t.get(c) for c in COLUMNS}, "inference_batch": t.get("inference_batch")}


def pareto_summary(record: dict, trials: list[dict], reference=None) -> dict:
    """What ``cifar-tune report EXP --json`` adds: objectives, the ``pareto`` list, the hypervolume history."""
    objectives = objectives_of(record)
    ref = list(reference) if reference is not None else reference_point(trials, objectives)
    history = hypervolume_history(trials, objectives, ref)
    return {"objectives": [list(o) for o in objectives], "pareto": [member_record(t) for t in front(trials, objectives)],
            "hypervolume": {"reference": ref, "final": history[-1]["hypervolume"] if history else 0.0,
                            "history": history}}


def pareto_table(exp: Experiment) -> pd.DataFrame:
    """One row per front member: net, trial, the measured columns, and the values of the searched parameters."""
    objectives = objectives_of(exp.record)
    rows = []
    for t in front(exp.trials, objectives):
        searched = [p for p in exp.searched_params(t["arch"]) if p in t["config"]]
        rows.append({"arch": t["arch"], "trial_id": t["trial_id"], **{c: t.get(c) for c in COLUMNS},
                     "config": ", ".join(f"{p}={_short(t['config'][p])}" for p in searched)})
    return pd.DataFrame(rows, columns=["arch", "trial_id", *COLUMNS, "config"])


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def caption(exp: Experiment) -> str:
    objectives = objectives_of(exp.record)
    given = bool(exp.spec.get("objectives"))
    what = ", ".join(f"{n} ({'higher' if d == 'max' else 'lower'} is better)" for n, d in objectives)
    return (f"Pareto front of the completed trials: {what}"
            + ("" if given else " (single-objective search, read as accuracy vs parameters)"))


def hypervolume_figure(exp: Experiment):
    """(plotly figure or None, note): hypervolume of the front after each completed trial."""
    import plotly.graph_objects as go

    objectives = objectives_of(exp.record)
    summary = pareto_summary(exp.record, exp.trials)
    history = summary["hypervolume"]["history"]
    if not history:
        return None, "no completed trial with every objective value"
    fig = go.Figure(go.Scatter(x=[h["completed"] for h in history], y=[h["hypervolume"] for h in history],
                               mode="lines+markers", text=[f"{h['arch']} {h['trial_id']}" for h in history]))
    names = " x ".join(n for n, _ in objectives)
    fig.update_layout(title=f"Hypervolume ({names}) by completed trials", xaxis_title="completed trials",
                      yaxis_title="hypervolume", template="plotly_white", height=420)
    ref = ", ".join(f"{n}={r:.4g}" for (n, _), r in zip(objectives, summary["hypervolume"]["reference"]))
    return fig, f"Reference point (losses, max objectives negated): {ref}."


__all__ = ["OBJECTIVES", "candidates", "front", "hypervolume_history", "pareto_summary", "pareto_table",
           "reference_point"]
