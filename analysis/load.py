"""Experiment directory -> one record per trial (and a pandas DataFrame of them).

Reads only what the search wrote: Ray Tune's experiment state (trial status, config, last result), each trial's
``result.json`` (every epoch), ``spec.json``, the scheduler's record (``asha_state.json``, ``moasha_state.json``,
``hyperband_state.json`` or ``pbt_state.json``: each trial's ``decisions``) and, once ``cifar-tune evaluate`` ran,
``evaluation.json``. Works on finished, running (killed) and resumed experiments.

Statuses: ``completed`` (trained all its epochs), ``stopped`` (ASHA stopped it early), ``diverged`` (NaN/inf loss),
``errored`` (raised), and for an experiment that is still running or was killed, ``running`` / ``pending``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from trainables.compat import trial_dir_name
from trainables.config import METRIC
from trainables.experiment import (ASHA_FILE, EVALUATION_FILE, HYPERBAND_FILE, MOASHA_FILE, PBT_FILE, SPEC_FILE,
                                   trial_outcome, unreadable_study)

BYTES_PER_PARAM = 4  # float32 weights: model size in MB = params * 4 / 1e6
# Inference speed each trial measured once (trainables.train.measure_inference); absent in older experiments.
INFERENCE_KEYS = ("inference_latency_ms", "inference_images_per_s_b1", "inference_images_per_s", "inference_batch")
HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", METRIC, "epoch_seconds")


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


def _clean(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _error_message(trial_dir: Path | None) -> str | None:
    """The last line of the trial's ``error.txt`` (the exception), or None."""
    path = trial_dir / "error.txt" if trial_dir else None
    if path is None or not path.exists():
        return None
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else None


def read_json(exp: Path, name: str, what: str, keys: dict | None = None) -> dict | None:
    """A JSON file of the experiment, None when absent; a half-written one (or an object without one of ``keys``,
    name -> the type its value must have) is an ExperimentError."""
    path = exp / name
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExperimentError(f"{what} {str(path)!r} is half-written or corrupt: {e}") from None
    missing = [k for k in keys or {} if not isinstance(record, dict) or k not in record]
    if missing:
        raise ExperimentError(f"{what} {str(path)!r} is half-written or corrupt: no {missing[0]!r} key")
    for key, kind in (keys or {}).items():
        if not isinstance(record[key], kind):
            raise ExperimentError(f"{what} {str(path)!r} is corrupt: {key!r} is {_shape(record[key])}, not "
                                  f"{_KINDS[kind]}")
    return record


_KINDS = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "a boolean",
          object: "a value"}
NUMBER = (int, float)  # a JSON number (a bool is not one)


def _shape(value) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return next(name for kind, name in _KINDS.items() if isinstance(value, kind))


class Maybe:
    """A shape for :func:`shape_problem`: null, or ``shape``."""

    def __init__(self, shape):
        self.shape = shape


def shape_problem(value, shape, where: str = "") -> str | None:
    """What keeps ``value`` (parsed JSON) from having ``shape``, naming the place (``'archs.origin_net.bands'``),
    or None. A shape is a type or a tuple of types (a bool is neither an int nor a number), ``Maybe(shape)`` (null
    or ``shape``), a dict (an object with those keys, each of its shape; the key ``"*"``: every value) or
    ``[shape]`` (a list, every item of that shape). Extra keys are allowed: a newer writer may add some."""
    if isinstance(shape, Maybe):
        return None if value is None else shape_problem(value, shape.shape, where)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return _not_a(value, dict, where)
        for key, inner in shape.items():
            if key != "*" and key not in value:
                return f"no {_at(where, key)!r} key"
            for k, v in (value.items() if key == "*" else [(key, value[key])]):
                problem = shape_problem(v, inner, _at(where, str(k)))
                if problem:
                    return problem
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return _not_a(value, list, where)
        return next((p for i, item in enumerate(value) if (p := shape_problem(item, shape[0], f"{where}[{i}]"))),
                    None)
    kinds = shape if isinstance(shape, tuple) else (shape,)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        return _not_a(value, float if set(kinds) == set(NUMBER) else kinds[0], where)
    return None


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _not_a(value, kind, where: str) -> str:
    return f"{(where or 'the record')!r} is {_shape(value)}, not {_KINDS[kind]}"


def experiment_path(exp_dir: str | Path) -> Path:
    """The experiment folder as an absolute path: Ray's pyarrow filesystem takes a relative one (``report NAME`` run
    in the storage folder) for a URI without a scheme, and a trial's ``path`` must not depend on the cwd."""
    return Path(exp_dir).expanduser().resolve()


def tune_state(exp: Path) -> dict | None:
    """Ray Tune's newest ``experiment_state-*.json`` (the one Tune resumes from and ExperimentAnalysis reads), None
    when there is none; a truncated one is an ExperimentError naming it. Tune itself, resuming from it, would log a
    traceback and start the search afresh (new trials beyond num_samples)."""
    states = sorted(p.name for p in exp.glob("experiment_state-*.json"))  # Tune's own pick: the greatest name
    return read_json(exp, states[-1], "Ray Tune state", {"trial_data": list}) if states else None


def load_spec(exp_dir: str | Path) -> dict:
    """``spec.json`` of the experiment (keys ``spec``, ``spaces``, ``metric`` ...); ExperimentError if absent."""
    exp = Path(exp_dir)
    try:
        is_dir = exp.is_dir()
    except OSError as e:  # e.g. a path component longer than the filesystem allows (ENAMETOOLONG)
        raise ExperimentError(f"no experiment directory at {str(exp)[:120]!r}...: {e.strerror}") from None
    if not is_dir:
        raise ExperimentError(f"no experiment directory at {str(exp)!r}")
    record = read_json(exp, SPEC_FILE, "experiment spec")
    if record is None:
        raise ExperimentError(f"{str(exp)!r} is not a cifar-tune experiment: {SPEC_FILE} is missing")
    spec = record.get("spec") if isinstance(record, dict) else None
    archs = spec.get("archs") if isinstance(spec, dict) else None
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise ExperimentError(f"{str(exp / SPEC_FILE)!r} holds no experiment spec ('spec.archs' is not a list of "
                              f"net names)")
    return record


def load_trials(exp_dir: str | Path) -> list[dict]:
    """A dict per trial: trial_id, arch, config, status, epochs (run), val_accuracy / val_loss (last),
    best_val_accuracy, best_val_loss, best_epoch, train_accuracy, train_loss, params, size_mb, train_time_s,
    max_epochs (the trial's budget), error (message), history (per-epoch metrics), path."""
    exp = experiment_path(exp_dir)
    spec = load_spec(exp)["spec"]
    try:
        record = scheduler_record(exp, spec)
    except ExperimentError:  # half-written: the trials are still readable; load() refuses it in one line
        record = None
    decisions = decisions_by_trial(record)
    initial = {r["trial_id"]: r["config"] for r in (record or {}).get("population", []) if r.get("trial_id")}
    if tune_state(exp) is None:
        raise ExperimentError(f"{str(exp)!r} has no Ray Tune experiment state yet (the search never started "
                              f"or was killed before its first save)")
    import logging

    from ray.tune import ExperimentAnalysis

    # A trial that never reported (pending, or errored at once) has no result.json; Ray warns about each one.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(str(exp))
    except Exception as e:  # Ray raises several types for a half-written state file
        raise ExperimentError(f"cannot read the Ray Tune state in {str(exp)!r} (half-written?): {e}") from e
    out = []
    for trial in analysis.trials:
        # Trial folders sit in the experiment dir under the name Ray stored (not its driver-side path, which
        # needs a running Ray session).
        name = trial_dir_name(trial)
        trial_dir = exp / name if name and (exp / name).is_dir() else None
        history = _epochs(trial_dir) if trial_dir else []
        last = history[-1] if history else (trial.last_result or None)
        status = trial_outcome(trial.status, last)
        scored = [r for r in history if _clean(r.get(METRIC)) is not None]
        best = max(scored, key=lambda r: r[METRIC]) if scored else None
        losses = [r["val_loss"] for r in history if _clean(r.get("val_loss")) is not None]
        params = (last or {}).get("params")
        out.append({
            "trial_id": trial.trial_id, "arch": trial.config.get("arch"), "config": dict(trial.config),
            "status": status, "epochs": (last or {}).get("epoch", 0), "max_epochs": trial.config.get("epochs"),
            "val_accuracy": _clean((last or {}).get(METRIC)), "val_loss": _clean((last or {}).get("val_loss")),
            "best_val_accuracy": best[METRIC] if best else None, "best_epoch": best["epoch"] if best else None,
            "best_val_loss": min(losses) if losses else None,
            "train_accuracy": _clean((last or {}).get("train_accuracy")),
            "train_loss": _clean((last or {}).get("train_loss")),
            "params": params,
            # Reported by the trial (weights + buffers) since issue 11; older experiments: from the parameter count.
            "size_mb": (last or {}).get("size_mb") or (params * BYTES_PER_PARAM / 1e6 if params else None),
            **{k: _clean((last or {}).get(k)) for k in INFERENCE_KEYS},
            "finished_at": (last or {}).get("timestamp"),  # unix seconds of the last result: completion order
            "train_time_s": sum(r.get("epoch_seconds", 0.0) for r in history),
            "error": _error_message(trial_dir) if status == "errored" else None,
            "history": [{k: _clean(r.get(k)) for k in HISTORY_KEYS} for r in history],
            "path": str(trial_dir) if trial_dir else None,
            # What the scheduler did to it, in order (see decisions_by_trial); PBT: the config it started with.
            "decisions": decisions.get(trial.trial_id, []),
            **({"initial_config": initial[trial.trial_id]} if trial.trial_id in initial else {}),
        })
    return out


def scheduler_record(exp: Path, spec: dict, check=None) -> dict | None:
    """The scheduler's record of the experiment (its JSON file), None when it has none (--scheduler none, or a
    search killed before the first decision); a half-written one is an ExperimentError. ``check``: a further test
    of the record (what the scheduler itself reads back on resume), raising ValueError; its message goes into the
    ExperimentError."""
    scheduler = spec.get("scheduler")
    if scheduler == "hyperband":
        name, what = HYPERBAND_FILE, "HyperBand state"
        record = read_json(exp, name, what, {"archs": dict, "pauses": list, "halvings": list, "stops": list})
    elif scheduler == "pbt":
        name, what = PBT_FILE, "PBT state"
        record = read_json(exp, name, what, {"population": list, "exploits": list})
        problem = record and shape_problem(record, {"population": [{"trial_id": Maybe(str), "config": dict}]})
        if problem:  # each member's initial config is read by load_trials
            raise ExperimentError(f"{what} {str(exp / name)!r} is corrupt: {problem}")
    else:
        name, what = ASHA_FILE, "ASHA state"
        record = read_json(exp, name, what, {"rungs": dict, "stops": list})
        if record is None:
            name, what = MOASHA_FILE, "MO-ASHA state"
            record = read_json(exp, name, what, {"rungs": dict, "stops": list})
    try:  # every decision read as report reads it: a record of another shape fails here, not inside Ray's restore
        decisions_by_trial(record)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ExperimentError(f"{what} {str(exp / name)!r} is corrupt: not the record the scheduler writes "
                              f"({type(e).__name__}: {e})") from None
    if record is not None and check is not None:
        try:
            check(record)
        except ValueError as e:
            raise ExperimentError(f"{what} {str(exp / name)!r} is corrupt: {e}") from None
    return record


def decisions_by_trial(record: dict | None) -> dict[str, list[dict]]:
    """trial id -> the scheduler's decisions about it, in epoch order, each a dict with ``kind``:

    * ``kept`` / ``stopped`` at a rung or milestone (``epoch``, ``value``; ``cutoff`` the value it had to reach or
      ``place`` of ``population`` for MO-ASHA; ``reason: budget`` for an epoch-budget stop), ASHA, MO-ASHA and
      HyperBand (with its ``bracket`` [band, s]);
    * ``paused`` (HyperBand): waited at ``epoch`` for its bracket;
    * ``exploited`` (PBT): at ``epoch`` it copied ``donor``'s checkpoint of ``donor_epoch`` and went on with
      ``new`` instead of ``old``; ``copied_by`` (PBT): ``trial`` copied it at ``epoch``.
    """
    out: dict[str, list[dict]] = {}
    if not record:
        return out

    def add(tid, **decision):
        out.setdefault(tid, []).append(decision)

    kind = record.get("kind")
    if kind == "pbt":
        for e in record.get("exploits", []):
            add(e["trial_id"], kind="exploited", epoch=e["epoch"], value=e.get("value"), donor=e.get("donor"),
                donor_epoch=e.get("donor_epoch"), old=e.get("old"), new=e.get("new"), status=e.get("status"))
            if e.get("donor"):
                add(e["donor"], kind="copied_by", epoch=e["epoch"], trial=e["trial_id"], status=e.get("status"))
    elif kind == "hyperband":
        places = {tid: place for arch in record.get("archs", {}).values() for tid, place in arch["trials"].items()}
        for p in record.get("pauses", []):
            add(p["trial_id"], kind="paused", epoch=p["epoch"], bracket=p["bracket"])
        for h in record.get("halvings", []):
            for tid in h["kept"]:
                add(tid, kind="kept", epoch=h["milestone"], value=h["values"].get(tid), cutoff=h["cutoff"],
                    bracket=h["bracket"])
            for tid in h["stopped"]:
                add(tid, kind="stopped", epoch=h["milestone"], value=h["values"].get(tid), cutoff=h["cutoff"],
                    bracket=h["bracket"])
        for stop in record.get("stops", []):
            if stop.get("reason"):  # not by a halving: at the last milestone of its bracket
                add(stop["trial_id"], kind="stopped", epoch=stop["epoch"], value=stop.get("value"),
                    reason=stop["reason"], bracket=stop["bracket"])
        for tid, place in places.items():
            out.setdefault(tid, []).insert(0, {"kind": "bracket", "epoch": 0, "bracket": place})
    elif kind == "moasha":
        for d in record.get("decisions", []):
            add(d["trial_id"], kind="kept" if d["kept"] else "stopped", epoch=d["rung"], value=d["values"],
                place=d["place"], population=d["population"])
        for s in record.get("stops", []):
            if s.get("reason"):
                add(s["trial_id"], kind="stopped", epoch=s["rung"], reason=s["reason"], value=s["values"])
    else:  # ASHA: a value at every rung the trial reached, a stop where it was stopped
        stops = {s["trial_id"]: s for s in record.get("stops", [])}
        max_t = record.get("max_t")
        for rungs in record.get("rungs", {}).values():
            for milestone, recorded in rungs:
                if max_t is not None and milestone >= max_t:  # the last epoch: the trial ended there, not judged
                    continue
                for tid, value in recorded.items():
                    stop = stops.get(tid)
                    if stop is None or stop["epoch"] != milestone:
                        add(tid, kind="kept", epoch=int(milestone), value=value)
        for tid, stop in stops.items():
            add(tid, kind="stopped", epoch=stop["epoch"], value=stop["value"], cutoff=stop.get("cutoff"),
                **({"reason": stop["reason"]} if stop.get("reason") else {}))
    for decisions in out.values():
        decisions.sort(key=lambda d: d["epoch"])  # stable: a pause at an epoch comes before its halving
    return out


def trials_frame(trials: list[dict]):
    """One row per trial; config values become columns (the trial's epoch budget is ``max_epochs``)."""
    import pandas as pd

    rows = []
    for t in trials:
        row = {k: v for k, v in t.items() if k not in ("config", "history", "decisions", "initial_config")}
        row.update({k: v for k, v in t["config"].items() if k not in row and k != "epochs"})
        rows.append(row)
    return pd.DataFrame(rows)


def history_frame(trials: list[dict]):
    """One row per (trial, epoch): trial_id, arch, status and the per-epoch metrics."""
    import pandas as pd

    rows = [{"trial_id": t["trial_id"], "arch": t["arch"], "status": t["status"], **h}
            for t in trials for h in t["history"]]
    return pd.DataFrame(rows, columns=["trial_id", "arch", "status", *HISTORY_KEYS])


def load_experiment(exp_dir: str | Path):
    """The trials as a DataFrame: one row per trial, config values flattened into columns."""
    return trials_frame(load_trials(exp_dir))


@dataclass
class Experiment:
    """Everything the analysis reads from one experiment directory."""

    path: Path
    record: dict  # spec.json
    trials: list[dict]
    asha: dict | None = None  # asha_state.json (moasha_state.json for a multi-objective search)
    scheduler: dict | None = None  # the scheduler's record, whichever it is (see scheduler_record)
    evaluation: dict | None = None  # evaluation.json
    frame: object = field(default=None, repr=False)  # pandas DataFrame, one row per trial
    history: object = field(default=None, repr=False)  # pandas DataFrame, one row per trial epoch
    without_study: bool = False  # read from the Ray results alone: the Optuna study is not opened

    @property
    def spec(self) -> dict:
        return self.record["spec"]

    @property
    def name(self) -> str:
        return self.spec.get("name") or self.path.name

    def searched_params(self, arch: str | None = None) -> list[str]:
        """The hyperparameters the search sampled (for one arch, or any), in the spaces' order."""
        if self.is_grid:  # the keys the grid rows vary (seed is a repeat, not a hyperparameter)
            rows = [r for r in self.spec["grid"] if arch is None or r.get("arch") == arch]
            keys = list(dict.fromkeys(k for r in rows for k in r))
            return [k for k in keys if k not in ("seed", "arch")
                    and len({json.dumps(r.get(k), default=str) for r in rows}) > 1]
        names: list[str] = []
        for a, space in self.record.get("spaces", {}).items():
            if arch is None or a == arch:
                names += [p for p in space.get("params", {}) if p not in names]
        return names

    @property
    def is_grid(self) -> bool:
        return self.spec.get("sampler") == "grid" and bool(self.spec.get("grid"))

    def param_spec(self, arch: str, name: str) -> dict:
        return self.record.get("spaces", {}).get(arch, {}).get("params", {}).get(name, {})


def load(exp_dir: str | Path, without_study: bool = False) -> Experiment:
    """Read the whole experiment directory (see :class:`Experiment`). An Optuna study that cannot be read is an
    ExperimentError (one line: the storage, why, what is left), unless ``without_study``: then nothing reads it."""
    exp = experiment_path(exp_dir)
    record = load_spec(exp)
    trials = load_trials(exp)
    if not trials:
        raise ExperimentError(f"{str(exp)!r} holds no trials yet")
    scheduler = scheduler_record(exp, record["spec"])
    asha = scheduler if (scheduler or {}).get("kind") not in ("hyperband", "pbt") else None
    evaluation = read_evaluation(exp)
    if not without_study:
        check_study(exp)
    return Experiment(path=exp, record=record, trials=trials, asha=asha, scheduler=scheduler, evaluation=evaluation,
                      frame=trials_frame(trials), history=history_frame(trials), without_study=without_study)


def read_evaluation(exp: Path) -> dict | None:
    """``evaluation.json``, None before any evaluation; one the report cannot read (half-written, or not the record
    ``cifar-tune evaluate`` writes: no list of per-net results) is an ExperimentError naming it."""
    record = read_json(exp, EVALUATION_FILE, "evaluation", {"results": object, "test_images": int, "mode": str,
                                                             "train_on": str, "created": str})
    for key in ("results", "grid"):
        rows = (record or {}).get(key, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("arch"), str) for r in rows):
            raise ExperimentError(f"evaluation {str(exp / EVALUATION_FILE)!r} is half-written or corrupt: {key!r} is "
                                  f"not a list of per-net results")
    return record


def check_study(exp_dir: str | Path) -> None:
    """ExperimentError, one line naming the storage and what is left (the Ray results), when the experiment's
    Optuna study cannot be read: a truncated or corrupt optuna.db, a database that does not answer."""
    problem = unreadable_study(exp_dir, load_spec(exp_dir)["spec"])
    if problem:
        raise ExperimentError(problem)
