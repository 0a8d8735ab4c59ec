"""The reports' comparative tables, computed from every trial of an experiment (pandas DataFrames).

* :func:`leaderboard` - the top-k configs per net, ranked by best validation accuracy;
* :func:`effect_tables` - one ablation-style table per hyperparameter, read at one epoch every trial reached, so
  ASHA's early stops do not favour the values that were allowed to train longer;
* :func:`comparison` - one row per net at the search's equal budget, with test accuracy (mean and 95% CI) once
  ``cifar-tune evaluate`` ran, and the number the net's report published beside it;
* :func:`grid_table` - for a preset run in ``grid`` mode, the report's own table regenerated row by row;
* :func:`decisions_table` - per trial, what the scheduler did to it (ASHA / HyperBand: kept or stopped at which
  milestone, with the cut-off; HyperBand: its bracket and pauses; PBT: its exploits and the lineage of its weights).

:func:`write_table` writes any of them as Markdown, CSV, LaTeX and HTML.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import Experiment
from analysis.stats import mean_ci, verdict
from trainables.config import METRIC

BEST = f"best_{METRIC}"
RANKED_OUT = ("errored", "diverged", "pending")  # never ranked: no usable validation score
BINS = 4  # bins for a continuous hyperparameter in an effect table


def fmt_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1000:
        return f"{int(v):,}"  # counts (params) that a missing value turned into floats
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.3g}" if (abs(v) < 1e-2 or abs(v) >= 1e4) and v != 0 else f"{v:.4g}"
    return str(v)


def fmt_ci(stat: dict | None, digits: int = 4) -> str:
    """``{"mean", "ci95": [lo, hi]}`` -> "0.7018 ± 0.0089" (half-width); a single run shows its value alone."""
    if not stat or stat.get("mean") is None:
        return ""
    ci = stat.get("ci95")
    if not ci or ci[0] is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {(ci[1] - ci[0]) / 2:.{digits}f}"


def config_string(row: pd.Series | dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={fmt_value(row.get(k))}" for k in keys
                     if k in row and not (isinstance(row.get(k), float) and math.isnan(row.get(k))))


# --------------------------------------------------------------------------------------------- leaderboard

def ranked(exp: Experiment) -> pd.DataFrame:
    """Trials with a usable validation score, best first within each net; adds a 1-based ``rank`` column."""
    df = exp.frame
    df = df[~df["status"].isin(RANKED_OUT) & df[BEST].notna()]
    df = df.sort_values(["arch", BEST, "epochs"], ascending=[True, False, False]).copy()
    df["rank"] = df.groupby("arch").cumcount() + 1
    return df


def leaderboard(exp: Experiment, k: int = 3) -> pd.DataFrame:
    """The top-``k`` configs of every net: scores, cost, and the values of the searched hyperparameters."""
    if k < 1:
        raise ValueError(f"top-k must be >= 1, got {k!r}")
    df = ranked(exp)
    df = df[df["rank"] <= k]
    metrics = ["arch", "rank", "trial_id", "status", "epochs", "max_epochs", BEST, "best_epoch", METRIC,
               "best_val_loss", "train_accuracy", "params", "size_mb", "train_time_s"]
    params = [p for p in exp.searched_params() if p in df.columns]
    out = df[metrics + params].rename(columns={"max_epochs": "epoch budget", METRIC: f"last {METRIC}"})
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------- effect tables

def equal_epoch(exp: Experiment) -> int:
    """The epoch every non-failed trial reached: ASHA's grace period, PBT's first perturbation (every trial's own
    config until then), else the shortest finished run."""
    spec = exp.spec
    if spec.get("scheduler") in ("asha", "pbt") and not exp.is_grid:
        return int(spec.get("grace_period", 1))
    done = exp.frame[exp.frame["status"].isin(["completed", "stopped"])]["epochs"]
    return int(done.min()) if len(done) else 1


def _value_at(exp: Experiment, epoch: int) -> pd.Series:
    """trial_id -> validation accuracy at ``epoch``; a trial that diverged earlier keeps its last value."""
    h = exp.history.dropna(subset=[METRIC])
    at = h[h["epoch"] == epoch].set_index("trial_id")[METRIC]
    early = h[(h["status"] == "diverged") & ~h["trial_id"].isin(at.index)]
    last = early.sort_values("epoch").groupby("trial_id")[METRIC].last()
    return pd.concat([at, last])


def _binned(values: pd.Series, pspec: dict) -> pd.Series:
    """Continuous values -> interval labels (log-spaced bins for a log-scale range); discrete values unchanged."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    ranged = pspec.get("type") in ("float", "int") and values.nunique() > 1
    if not numeric or pspec.get("type") == "categorical" or not (ranged or values.nunique() > BINS):
        return values.map(fmt_value)
    low, high = pspec.get("low", values.min()), pspec.get("high", values.max())
    log = bool(pspec.get("log")) and low > 0
    edges = np.logspace(np.log10(low), np.log10(high), BINS + 1) if log else np.linspace(low, high, BINS + 1)
    edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())
    labels = [f"{fmt_value(float(a))}–{fmt_value(float(b))}" for a, b in zip(edges[:-1], edges[1:])]
    return pd.cut(values, edges, labels=labels, include_lowest=True, duplicates="drop").astype(str)


def effect_tables(exp: Experiment, at_epoch: int | None = None) -> tuple[int, dict[str, pd.DataFrame]]:
    """(epoch, {hyperparameter: table}). Each table: per net and value (binned for continuous ones), how many
    trials had it, how many of those diverged, and the best and median validation accuracy at ``epoch``."""
    epoch = at_epoch or equal_epoch(exp)
    score = _value_at(exp, epoch).rename("score")
    df = exp.frame.join(score, on="trial_id")
    started = {t["trial_id"]: t["initial_config"] for t in exp.trials if t.get("initial_config")}
    if started:  # PBT: a trial's values at the first boundary belong to the config it started with
        for name in exp.searched_params():
            if name in df.columns:
                df[name] = [started.get(tid, {}).get(name, v) for tid, v in zip(df["trial_id"], df[name])]
    df = df[df["score"].notna()]
    tables = {}
    for name in exp.searched_params():
        if name not in df.columns:
            continue
        parts = []
        for arch, group in df.groupby("arch"):
            g = group[group[name].notna()]
            if g.empty:
                continue
            g = g.assign(value=_binned(g[name], exp.param_spec(arch, name)))
            t = g.groupby("value", sort=False).agg(trials=("score", "size"),
                                                   diverged=("status", lambda s: int((s == "diverged").sum())),
                                                   best=("score", "max"), median=("score", "median"))
            t = t.reset_index()
            t.insert(0, "arch", arch)
            order = g.drop_duplicates("value").sort_values(name)["value"].tolist()
            parts.append(t.set_index("value").loc[order].reset_index()[["arch", "value", *t.columns[2:]]])
        if parts:
            table = pd.concat(parts, ignore_index=True)
            tables[name] = table.rename(columns={"value": name, "best": f"best {METRIC}@{epoch}",
                                                 "median": f"median {METRIC}@{epoch}"})
    return epoch, tables


# --------------------------------------------------------------------------------------------- cross-net comparison

def _published(arch: str) -> tuple[float | None, str]:
    from trainables.models import get_arch

    try:
        pub = get_arch(arch).published
    except ValueError:
        return None, ""
    return pub.get("value"), f"{pub.get('metric', '')} ({pub.get('source', '')})" if pub else ""


def _eval_group(exp: Experiment, arch: str, trial_id: str | None) -> dict | None:
    groups = [g for g in (exp.evaluation or {}).get("results", []) if g["arch"] == arch]
    match = [g for g in groups if g.get("trial_id") == trial_id]
    return (match or sorted(groups, key=lambda g: g.get("rank", 99)) or [None])[0]


def _test_runs(ev: dict) -> str:
    """How the evaluated runs were trained: seeds, epochs, and the training set (a subset says so)."""
    cfg = ev.get("config") or {}
    epochs = f" x {cfg['epochs']} epochs" if cfg.get("epochs") else ""
    images = ev.get("train_images") if isinstance(ev.get("train_images"), int) else cfg.get("subset")
    subset = f" ({images:,} images)" if images else ""
    return f"{len(ev['seeds'])} seeds{epochs}, trained on {ev['train_on']}{subset}"


def test_split_uses(exp: Experiment, arch: str) -> str:
    """How many times this net met the test split on this data: the ledger as the evaluation saw it (every use on
    the machine that evaluated), else the experiment's own ledger; evaluations before the ledger say so."""
    from trainables import ledger

    net = ((exp.evaluation or {}).get("test_split") or {}).get("nets", {}).get(arch)
    if net:
        now = ", ".join(str(u) for u in net["this_evaluation"])
        return f"use {now} of {net['uses']}"
    mine = ledger.uses(ledger.read_experiment(exp.path), arch)
    if mine:
        return f"{len(mine)} in this experiment"
    return "not counted (no ledger)" if exp.evaluation else ""


def _verdict(ev: dict | None, value, metric: str) -> str:
    name = metric.split(" ")[0]
    if not ev or value is None or not isinstance(ev.get(name), dict):
        return ""
    return verdict(ev[name], value)


def comparison(exp: Experiment) -> pd.DataFrame:
    """One row per net at the search's equal budget, best config by validation; test numbers from evaluation."""
    best = ranked(exp)
    rows = []
    for arch in exp.spec["archs"]:
        trials = exp.frame[exp.frame["arch"] == arch]
        top = best[(best["arch"] == arch) & (best["rank"] == 1)]
        r = top.iloc[0] if len(top) else None
        ev = _eval_group(exp, arch, r["trial_id"] if r is not None else None)
        value, metric = _published(arch)
        rows.append({
            "net": arch, "params": r["params"] if r is not None else None,
            "size_mb": r["size_mb"] if r is not None else None,
            "train_time_s": r["train_time_s"] if r is not None else None,
            "trials": len(trials), "epochs trained": int(trials["epochs"].fillna(0).sum()),
            "best config": config_string(r, exp.searched_params(arch)) if r is not None else "no usable trial",
            METRIC: r[BEST] if r is not None else None,
            "test_accuracy (95% CI)": fmt_ci(ev.get("test_accuracy")) if ev else "",
            "weighted_f1": ev["weighted_f1"]["mean"] if ev else None,
            "test_loss": ev["test_loss"]["mean"] if ev else None,
            "test runs": _test_runs(ev) if ev else "not evaluated",
            "published": value, "published metric": metric,
            "verdict (95% CI)": _verdict(ev, value, metric), "test-split uses": test_split_uses(exp, arch),
        })
    svm = (exp.evaluation or {}).get("svm")
    if svm:
        rows.append({"net": f"svm_pca (subset {svm['subset']:,})", "params": None, "size_mb": None,
                     "train_time_s": svm.get("fit_seconds"), "trials": 1, "epochs trained": None,
                     "best config": config_string(svm, ["k", "C", "gamma"]), METRIC: svm.get(METRIC),
                     "test_accuracy (95% CI)": f"{svm['test_accuracy']:.4f}", "weighted_f1": svm.get("weighted_f1"),
                     "test_loss": None, "test runs": f"1 fit on the first {svm['subset']:,} training images",
                     "published": svm.get("published", {}).get("value"),
                     "published metric": "{metric} ({source})".format(**svm["published"]) if svm.get("published")
                     else ""})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- grid preset table

def _same(a, b) -> bool:
    return json.dumps(a, default=str) == json.dumps(b, default=str)


def grid_points(exp: Experiment) -> list[tuple[str, dict, list[dict]]]:
    """For a ``grid``-mode preset experiment: (label, config, trials) per point of the preset's grid, the label
    being the key into the preset's published numbers. Trials match on the keys the grid varies (and arch), so a
    grid shrunk in epochs or data still lines up with the report's rows. Empty for any other experiment."""
    if not exp.is_grid or not exp.spec.get("preset"):
        return []
    from trainables.presets import get_preset, labelled_grid

    points = labelled_grid(get_preset(exp.spec["preset"].partition(":")[0]))
    keys = [k for k in dict.fromkeys(k for _, c in points for k in c)
            if len({json.dumps(c.get(k), default=str) for _, c in points}) > 1 or k == "arch"]
    return [(label, config, [t for t in exp.trials if all(_same(t["config"].get(k), config.get(k)) for k in keys)])
            for label, config in points]


def grid_table(exp: Experiment) -> pd.DataFrame | None:
    """The report's table for a ``grid``-mode preset experiment: one row per grid point (label), our validation
    (and, once evaluated, test) numbers over the seeds, the published numbers beside them."""
    points = grid_points(exp)
    if not points:
        return None
    from trainables.presets import get_preset

    preset = get_preset(exp.spec["preset"].partition(":")[0])
    evaluated = {g["label"]: g for g in (exp.evaluation or {}).get("grid", [])}
    rows = []
    for label, config, trials in points:
        vals = [t[METRIC] for t in trials if t[METRIC] is not None]
        row = {"point": label, "runs": len(trials),
               "diverged": sum(t["status"] == "diverged" for t in trials), f"{METRIC} (95% CI)": ""}
        if vals:
            row[f"{METRIC} (95% CI)"] = fmt_ci(mean_ci(vals))
        ev = evaluated.get(label)
        row["test_accuracy (95% CI)"] = fmt_ci(ev["test_accuracy"]) if ev else ""
        row["weighted_f1"] = ev["weighted_f1"]["mean"] if ev else None
        row["test_loss"] = ev["test_loss"]["mean"] if ev else None
        for metric, value in preset.published.get(label, {}).items():
            row[f"published {metric}"] = (f"[{value[0]}, {value[1]}]" if isinstance(value, (list, tuple))
                                          else value)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- scheduler decisions

def _decision_text(d: dict) -> str:
    kind, epoch = d["kind"], d.get("epoch")
    if kind == "bracket":
        band, s = d["bracket"]
        return f"bracket s={s}" + (f" of band {band}" if band else "")
    if kind == "paused":
        return f"paused at {epoch}"
    if kind in ("kept", "stopped"):
        value = d.get("value")
        if d.get("reason"):
            why = f"{d['reason']}"
        elif d.get("place") is not None:
            why = f"place {d['place']} of {d['population']}"
        elif isinstance(value, (int, float)) and d.get("cutoff") is not None:
            why = f"{fmt_value(value)}; cut-off {fmt_value(d['cutoff'])}"  # a tie at the cut-off can go either way
        else:
            why = fmt_value(value) if not isinstance(value, dict) else ""
        return f"{kind} at {epoch}" + (f" ({why})" if why else "")
    if kind == "exploited":
        changes = ", ".join(f"{k} {fmt_value(v)}→{fmt_value((d.get('new') or {}).get(k))}"
                            for k, v in (d.get("old") or {}).items() if v != (d.get("new") or {}).get(k))
        lost = " [lost in a driver kill]" if d.get("status") == "lost" else ""
        return (f"at {epoch} copied {d.get('donor')} (its epoch {d.get('donor_epoch')})"
                + (f": {changes}" if changes else "") + lost)
    if kind == "copied_by":
        return f"copied by {d['trial']} at {epoch}"
    return kind


def lineage(exp: Experiment, trial_id: str) -> str:
    """Whose training the trial's final weights hold, newest first: "t1 (3–4) ← t7 (1–2)" = epochs 3-4 trained as
    t1, from t7's checkpoint of epoch 2 (PBT exploits; the trial's own id alone when it was never replaced)."""
    by_trial = {t["trial_id"]: t for t in exp.trials}
    segments, current = [], trial_id
    upto = (by_trial.get(trial_id) or {}).get("epochs") or 0
    for _ in range(len(by_trial) + 1):  # a donor's epoch is always earlier: the chain ends
        prior = [d for d in (by_trial.get(current) or {}).get("decisions", [])
                 if d["kind"] == "exploited" and d.get("status") != "lost" and d["epoch"] < upto]
        if not prior:
            segments.append((current, 1, upto))
            break
        last = prior[-1]
        segments.append((current, last["epoch"] + 1, upto))
        current, upto = last["donor"], last["donor_epoch"]
    return " ← ".join(f"{t} ({a}–{b})" if a < b else f"{t} ({b})" for t, a, b in segments if a <= b)


def decisions_table(exp: Experiment) -> pd.DataFrame | None:
    """One row per trial the scheduler acted on: its status and epochs, and the decisions in order (``report
    --json`` has them as records, per trial, under ``decisions``); for PBT the lineage of its weights. None for
    an experiment without a scheduler record."""
    if exp.scheduler is None and exp.asha is None:
        return None
    rows = []
    for t in sorted(exp.trials, key=lambda t: (t["arch"] or "", t["trial_id"])):
        decisions = t.get("decisions") or []
        row = {"arch": t["arch"], "trial_id": t["trial_id"], "status": t["status"], "epochs": t["epochs"],
               BEST: t.get(BEST), "decisions": "; ".join(_decision_text(d) for d in decisions)}
        if (exp.scheduler or {}).get("kind") == "pbt":
            row["lineage (final weights)"] = lineage(exp, t["trial_id"])
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- output

def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str = "") -> list[Path]:
    """``name``.md / .csv / .tex / .html in ``out_dir``; numbers rounded to 4 significant digits for display."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = df.copy()
    for c in shown.columns:
        shown[c] = shown[c].map(fmt_value).astype(str)
    paths = [out / f"{name}.{ext}" for ext in ("md", "csv", "tex", "html")]
    paths[0].write_text((f"**{caption}**\n\n" if caption else "") + shown.to_markdown(index=False) + "\n")
    df.to_csv(paths[1], index=False)
    paths[2].write_text(shown.to_latex(index=False, caption=caption or None, label=f"tab:{name}", escape=True))
    paths[3].write_text(shown.to_html(index=False, border=0, classes="table", na_rep=""))
    return paths
