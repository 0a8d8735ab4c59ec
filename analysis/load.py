"""Experiment directory -> one record per trial (and a pandas DataFrame of them).

Reads only what the search wrote: Ray Tune's experiment state (trial status, config, last result), each trial's
``result.json`` (every epoch), and ``spec.json``. Works on finished, running (killed) and resumed experiments.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from trainables.config import METRIC

SPEC_FILE = "spec.json"


class ExperimentError(RuntimeError):
    """The directory is not (or not yet) a cifar-tune experiment; the message says what is missing."""


def _epochs(trial_dir: Path) -> list[dict]:
    rows = []
    path = trial_dir / "result.json"
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line cut short by a kill: everything before it stands
    # A trial resumed from an older checkpoint re-reports epochs: keep the last report of each epoch.
    by_epoch = {r["epoch"]: r for r in rows if "epoch" in r}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _status(tune_status: str, last: dict | None) -> str:
    if tune_status == "ERROR":
        return "errored"
    if tune_status == "TERMINATED":
        s = (last or {}).get("status")
        return {"completed": "completed", "diverged": "diverged", "running": "stopped"}.get(s, "errored")
    return "running" if tune_status == "RUNNING" else "pending"


def _clean(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def load_trials(exp_dir: str | Path) -> list[dict]:
    """A dict per trial: trial_id, arch, config, status, epochs, val_accuracy (last), best_val_accuracy, params,
    train_time_s, history (per-epoch metrics), path."""
    exp = Path(exp_dir)
    if not exp.is_dir():
        raise ExperimentError(f"no experiment directory at {str(exp)!r}")
    if not (exp / SPEC_FILE).exists():
        raise ExperimentError(f"{str(exp)!r} is not a cifar-tune experiment: {SPEC_FILE} is missing")
    if not list(exp.glob("experiment_state*.json")):
        raise ExperimentError(f"{str(exp)!r} has no Ray Tune experiment state yet (the search never started "
                              f"or was killed before its first save)")
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(str(exp))
    except Exception as e:  # Ray raises several types for a half-written state file
        raise ExperimentError(f"cannot read the Ray Tune state in {str(exp)!r}: {e}") from e
    out = []
    for trial in analysis.trials:
        # Trial folders sit in the experiment dir under the name Ray stored (not its driver-side path, which
        # needs a running Ray session).
        name = getattr(getattr(trial, "storage", None), "trial_dir_name", None)
        trial_dir = exp / name if name and (exp / name).is_dir() else None
        history = _epochs(trial_dir) if trial_dir else []
        last = history[-1] if history else (trial.last_result or None)
        status = _status(trial.status, last)
        vals = [r[METRIC] for r in history if _clean(r.get(METRIC)) is not None]
        out.append({
            "trial_id": trial.trial_id, "arch": trial.config.get("arch"), "config": dict(trial.config),
            "status": status, "epochs": (last or {}).get("epoch", 0),
            "val_accuracy": _clean((last or {}).get(METRIC)), "val_loss": _clean((last or {}).get("val_loss")),
            "best_val_accuracy": max(vals) if vals else None,
            "train_accuracy": _clean((last or {}).get("train_accuracy")),
            "params": (last or {}).get("params"),
            "train_time_s": sum(r.get("epoch_seconds", 0.0) for r in history),
            "error": str(trial.error_file) if status == "errored" and getattr(trial, "error_file", None) else None,
            "history": [{k: _clean(r.get(k)) for k in ("epoch", "train_loss", "train_accuracy", "val_loss", METRIC,
                                                        "epoch_seconds")} for r in history],
            "path": str(trial_dir) if trial_dir else None,
        })
    return out


def load_experiment(exp_dir: str | Path):
    """The trials as a DataFrame: one row per trial, config values flattened into columns."""
    import pandas as pd

    rows = []
    for t in load_trials(exp_dir):
        row = {k: v for k, v in t.items() if k not in ("config", "history")}
        row.update({k: v for k, v in t["config"].items() if k not in row})
        rows.append(row)
    return pd.DataFrame(rows)
