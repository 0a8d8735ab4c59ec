"""The report's plotly figures, each a function of an :class:`~analysis.load.Experiment`.

A figure that has nothing to show (no ASHA state, no evaluation, too few trials for fANOVA) is returned as None
together with the reason, so the page can say why it is missing instead of showing an empty plot.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.load import Experiment
from analysis.tables import BEST, equal_epoch, ranked
from trainables.config import METRIC
from trainables.experiment import sqlite_url, study_name

TOP_CURVES = 5  # learning curves drawn per net
MIN_FANOVA_TRIALS = 4  # fewer trials than this say nothing about importance
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")


def _color(exp: Experiment, arch: str) -> str:
    return COLORS[exp.spec["archs"].index(arch) % len(COLORS)] if arch in exp.spec["archs"] else COLORS[-1]


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", height=kw.pop("height", 420),
                      margin=kw.pop("margin", dict(l=60, r=20, t=60, b=50)), **kw)
    return fig


def learning_curves(exp: Experiment) -> tuple[go.Figure | None, str]:
    """Validation (solid) and training (dotted) accuracy per epoch of each net's top trials."""
    top = ranked(exp)
    top = top[top["rank"] <= TOP_CURVES]
    if top.empty:
        return None, "no trial has a validation score yet"
    fig = go.Figure()
    for _, row in top.iterrows():
        h = exp.history[exp.history["trial_id"] == row["trial_id"]]
        name, color = f"{row['arch']} #{row['rank']} ({row['trial_id']})", _color(exp, row["arch"])
        fig.add_trace(go.Scatter(x=h["epoch"], y=h[METRIC], mode="lines+markers", name=name, legendgroup=name,
                                 line=dict(color=color, width=3 if row["rank"] == 1 else 1.5)))
        fig.add_trace(go.Scatter(x=h["epoch"], y=h["train_accuracy"], mode="lines", name=f"{name} train",
                                 legendgroup=name, showlegend=False, line=dict(color=color, dash="dot", width=1)))
    return _layout(fig, f"Learning curves: top {TOP_CURVES} trials per net ({METRIC} solid, train dotted)",
                   xaxis=dict(title="epoch", dtick=1), yaxis_title="accuracy"), ""


def rung_survival(exp: Experiment) -> tuple[go.Figure | None, str]:
    """How many trials of each net reached each ASHA rung (from the trials' histories; rungs from asha_state)."""
    reached = exp.frame[["arch", "epochs"]].fillna({"epochs": 0})
    if exp.asha and exp.asha.get("rungs"):
        milestones = sorted({int(m) for rungs in exp.asha["rungs"].values() for m, _ in rungs})
        title = f"ASHA rung survival (grace {exp.asha.get('grace_period')}, reduction {exp.asha.get('reduction_factor')})"
    else:
        milestones = list(range(1, int(reached["epochs"].max() or 1) + 1))
        title = "Trials reaching each epoch (no ASHA in this experiment)"
    max_t = (exp.asha or {}).get("max_t") or exp.spec.get("max_epochs")
    if max_t and int(max_t) not in milestones:
        milestones.append(int(max_t))
    fig = go.Figure()
    for arch in exp.spec["archs"]:
        mine = reached[reached["arch"] == arch]["epochs"]
        fig.add_trace(go.Bar(x=[str(m) for m in milestones], y=[int((mine >= m).sum()) for m in milestones],
                             name=f"{arch} ({len(mine)} trials)", marker_color=_color(exp, arch)))
    return _layout(fig, title, barmode="group", xaxis_title="epoch (rung)", yaxis_title="trials reaching it"), ""


def parallel_coordinates(exp: Experiment, arch: str) -> tuple[go.Figure | None, str]:
    """One line per trial of ``arch`` across its searched hyperparameters, coloured by best validation accuracy."""
    df = ranked(exp)
    df = df[df["arch"] == arch]
    params = [p for p in exp.searched_params(arch) if p in df.columns and df[p].notna().any()]
    if len(df) < 2 or not params:
        return None, f"{arch}: fewer than 2 scored trials"
    dims = []
    for p in params:
        col = df[p]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            log = exp.param_spec(arch, p).get("log") and (col.dropna() > 0).all()
            values = np.log10(col.astype(float)) if log else col.astype(float)
            dims.append(dict(label=f"log10 {p}" if log else p, values=values.fillna(values.min() if values.notna().any()
                                                                                   else 0)))
        else:
            text = col.map(lambda v: "unset" if pd.isna(v) else str(v))
            cats = sorted(text.unique())
            dims.append(dict(label=p, values=text.map(cats.index), tickvals=list(range(len(cats))), ticktext=cats))
    dims.append(dict(label=BEST, values=df[BEST]))
    fig = go.Figure(go.Parcoords(line=dict(color=df[BEST], colorscale="Viridis", showscale=True), dimensions=dims))
    return _layout(fig, f"Parallel coordinates: {arch} ({len(df)} trials; conditional values unset drawn at the "
                        f"axis minimum)", height=480, margin=dict(l=60, r=40, t=120, b=40)), ""


def _study(exp: Experiment, arch: str):
    import optuna

    spec = exp.spec
    url = spec.get("optuna_storage") or sqlite_url(exp.path)
    name = study_name(spec["name"], arch)
    try:
        return optuna.load_study(study_name=name, storage=url)
    except Exception as e:  # a missing study or database: the caller reports the reason
        raise LookupError(f"no Optuna study {name}: {e}") from None


def importance(exp: Experiment) -> tuple[go.Figure | None, str]:
    """Optuna's fANOVA importance per net. Uses the study's COMPLETE trials when there are enough; otherwise
    every trial's intermediate value at the equal epoch (ASHA-pruned trials included)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if exp.is_grid:
        return None, "grid experiment: no Optuna study to assess"
    if exp.without_study:
        return None, "read without the Optuna study (--without-study): no importance"
    epoch, panels, notes = equal_epoch(exp), [], []
    for arch in exp.spec["archs"]:
        try:
            study = _study(exp, arch)
        except LookupError as e:
            notes.append(str(e))
            continue
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        source = f"{len(complete)} complete trials, final {METRIC}"
        if len(complete) < MIN_FANOVA_TRIALS:
            study = optuna.create_study(direction="maximize")
            for t in study_trials_at(_study(exp, arch), epoch):
                study.add_trial(t)
            source = f"{len(study.trials)} trials, {METRIC} at epoch {epoch}"
        if len(study.trials) < MIN_FANOVA_TRIALS:
            notes.append(f"{arch}: {len(study.trials)} usable trials, fANOVA needs {MIN_FANOVA_TRIALS}")
            continue
        target = None
        if len(study.directions) > 1:  # a multi-objective study: importance for the accuracy objective
            names = [name for name, _ in exp.spec.get("objectives") or []]
            if METRIC not in names:
                notes.append(f"{arch}: multi-objective study without {METRIC}: no importance drawn")
                continue
            k = names.index(METRIC)
            target, source = (lambda t, k=k: t.values[k]), f"{source} (objective {METRIC})"
        try:
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=target)
        except (ValueError, RuntimeError) as e:
            notes.append(f"{arch}: fANOVA failed ({e})")
            continue
        if imp:
            panels.append((arch, source, imp))
    if not panels:
        return None, "; ".join(notes) or "no study to assess"
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[f"{a} ({s})" for a, s, _ in panels])
    for i, (arch, _, imp) in enumerate(panels, start=1):
        names = list(imp)[::-1]
        fig.add_trace(go.Bar(x=[imp[n] for n in names], y=names, orientation="h", name=arch,
                             marker_color=_color(exp, arch)), row=1, col=i)
    return _layout(fig, "Hyperparameter importance (Optuna fANOVA)", showlegend=False,
                   height=max(360, 28 * max(len(p[2]) for p in panels))), "; ".join(notes)


def study_trials_at(study, epoch: int) -> list:
    """The study's trials re-scored by their intermediate value at ``epoch`` (for importance at equal epochs)."""
    import optuna

    out = []
    for t in study.get_trials(deepcopy=False):
        value = t.intermediate_values.get(epoch)
        if value is not None and np.isfinite(value) and t.params:
            out.append(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=value,
                                                 params=t.params, distributions=t.distributions))
    return out


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated by a smaller-``x`` (cheaper) row with a higher-or-equal ``y``, cheapest first."""
    ordered = points.sort_values([x, y], ascending=[True, False])
    best, keep = -np.inf, []
    for idx, row in ordered.iterrows():
        if row[y] > best:
            keep.append(idx)
            best = row[y]
    return ordered.loc[keep]


def accuracy_vs_params(exp: Experiment) -> tuple[go.Figure | None, str]:
    """Best validation accuracy against parameter count for every scored trial; the Pareto front marked;
    evaluated test accuracy (mean and 95% CI) as diamonds when ``evaluation.json`` exists."""
    df = ranked(exp).dropna(subset=["params"])
    if df.empty:
        return None, "no scored trial with a parameter count"
    fig = go.Figure()
    for arch, g in df.groupby("arch"):
        fig.add_trace(go.Scatter(x=g["params"], y=g[BEST], mode="markers", name=arch, text=g["trial_id"],
                                 marker=dict(color=_color(exp, arch), size=9, opacity=0.7)))
    front = pareto_front(df, "params", BEST)
    fig.add_trace(go.Scatter(x=front["params"], y=front[BEST], mode="lines+markers", name="Pareto front",
                             line=dict(color="black", dash="dash", shape="hv"),
                             marker=dict(symbol="star", size=14, color="gold", line=dict(color="black", width=1))))
    for g in (exp.evaluation or {}).get("results", []):
        if g.get("rank") != 1 or g["test_accuracy"]["mean"] is None:
            continue
        params = df[df["trial_id"] == g["trial_id"]]["params"]
        if params.empty:
            continue
        ci = g["test_accuracy"].get("ci95") or [g["test_accuracy"]["mean"]] * 2
        fig.add_trace(go.Scatter(x=[params.iloc[0]], y=[g["test_accuracy"]["mean"]], mode="markers",
                                 name=f"{g['arch']} test ({len(g['seeds'])} seeds)",
                                 error_y=dict(type="data", symmetric=False, array=[ci[1] - g["test_accuracy"]["mean"]],
                                              arrayminus=[g["test_accuracy"]["mean"] - ci[0]]),
                                 marker=dict(symbol="diamond", size=12, color=_color(exp, g["arch"]))))
    return _layout(fig, "Accuracy vs parameters across nets (Pareto front: no smaller net scores higher)",
                   xaxis=dict(title="parameters", type="log"), yaxis_title="accuracy"), ""


def confusion_matrices(exp: Experiment) -> tuple[go.Figure | None, str]:
    """Test-set confusion matrix (summed over seeds) of each net's evaluated best config, and of the SVM."""
    ev = exp.evaluation
    if not ev:
        return None, "no evaluation yet: run `cifar-tune evaluate` for the test-set figures"
    mats = [(f"{g['arch']} #{g.get('rank', 1)}" + (f" {g['label']}" if g.get("label") else ""),
             g["confusion_matrix"]) for g in ev.get("results", []) if g.get("rank") == 1]
    if ev.get("svm", {}).get("confusion_matrix"):
        mats.append((f"svm_pca (subset {ev['svm']['subset']})", ev["svm"]["confusion_matrix"]))
    if not mats:
        return None, "the evaluation holds no confusion matrix"
    classes = ev["classes"]
    fig = make_subplots(rows=1, cols=len(mats), subplot_titles=[m[0] for m in mats], horizontal_spacing=0.08)
    for i, (_, m) in enumerate(mats, start=1):
        m = np.asarray(m)
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        fig.add_trace(go.Heatmap(z=share, x=classes, y=classes, text=m, texttemplate="%{text}", colorscale="Blues",
                                 zmin=0, zmax=1, showscale=i == len(mats),
                                 hovertemplate="true %{y}<br>predicted %{x}<br>%{text} images<extra></extra>"),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i)
    fig.update_xaxes(title_text="predicted")
    fig.update_yaxes(title_text="true", row=1, col=1)
    return _layout(fig, "Test-set confusion matrices (colour: share of the true class)",
                   height=480, width=max(520, 460 * len(mats))), ""
