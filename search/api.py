"""cifar-tune from Python: the searches, evaluations and reports of the command line, with DataFrames back.

    from search import api

    exp = api.search("simple_cnn", num_samples=8, max_epochs=4, set={"subset": 5000}, storage="~/tune", name="a")
    exp.trials                      # DataFrame, one row per trial (config values as columns)
    exp.best()                      # DataFrame, each net's best trial on the validation split
    exp.evaluate(top_k=1, repeats=3, epochs=10)   # DataFrame, test accuracy mean and 95% CI per config
    exp.report()                    # Path of the HTML report
    api.open_experiment("~/tune/a")  # an experiment made earlier (by the CLI or here)

Every keyword of ``search`` is the ``cifar-tune search`` flag of the same name (``--num-samples`` ->
``num_samples``); values go through the same parser and the same checks, so the CLI and this module cannot
disagree: the CLI is the thin layer (it parses argv into the same namespace and runs the same functions). Errors are
raised as exceptions (``SpecError``, ``ConfigError``, ``DataError``, ``ExperimentError``), each with the one-line
message the CLI prints.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from search.spec import SpecError


class SearchFailed(RuntimeError):
    """The search ran but no trial finished (the first trial's error is in the message)."""


def _search_namespace(options: dict) -> argparse.Namespace:
    """The namespace `cifar-tune search` would build, with ``options`` (python values) in place of the flags."""
    from search.cli import build_parser
    from trainables.compat import parser_actions

    parser = build_parser()
    args = parser.parse_args(["search"])
    actions = {a.dest: a for a in parser_actions(parser.commands["search"])}  # each flag's type and default
    known = {k for k in vars(args) if k not in ("func", "command")}
    for key, value in options.items():
        if key not in known:
            raise SpecError(f"search: unknown option {key!r}" + _meant(key, value, known))
        setattr(args, key, _typed(key, value, actions[key]))
    return args


def _typed(key: str, value, action: argparse.Action):
    """``value`` as the CLI's parser would have made it from the flag, or SpecError naming it: what the API takes
    must be what the command line can say (a TypeError from deep in a search was the answer before)."""
    if value is None:
        return action.default
    if key == "set":
        if isinstance(value, dict):
            return [_assignment(k, v) for k, v in value.items()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) and "=" in v for v in value):
            return list(value)
        raise SpecError(f"search: set={value!r}: a dict of config values (set={{'lr': 0.1}}) or a list of "
                        f"'key=value' strings")
    if key in ("arch", "objectives") and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if action.nargs == 0 and action.const is True:  # a store_true flag
        _booleans("search", SpecError, **{key: value})
        return value
    if action.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, int if action.type is int else (int, float)):
            raise SpecError(f"search: {key}={value!r}: {'an integer' if action.type is int else 'a number'}")
        return value
    if not isinstance(value, (str, os.PathLike)):
        listed = " or a list of strings" if key in ("arch", "objectives") else ""
        raise SpecError(f"search: {key}={value!r}: a string{listed}")
    return os.fspath(value)


def _booleans(where: str, error: type[Exception], **flags) -> None:
    """Each of ``flags`` a bool, or ``error`` naming it: a yes/no keyword of the API takes True or False only (the
    string "no" is truthy: taken as True, it did the opposite of what it said). Every bool keyword goes through
    here."""
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise error(f"{where}: {key}={value!r}: True or False")


def _meant(key: str, value, known: set[str]) -> str:
    """' (did you mean ...?)' for an unknown keyword, in python spelling (``n_trials``: ``num_samples``; ``lr=0.1``:
    ``set={'lr': 0.1}``), from the CLI's own guess; else the list of keywords."""
    from search.cli.common import likely_flag

    flag = likely_flag("--" + key.replace("_", "-"), {"--" + k.replace("_", "-") for k in known})
    if flag is None:
        return f"; options: {', '.join(sorted(known))}"
    if flag.startswith("--set "):
        return f" (did you mean set={{{key!r}: {value!r}}}?)"
    return f" (did you mean {flag[2:].replace('-', '_')}?)"


def _assignment(key: str, value) -> str:
    """A --set item from a python value: booleans and None as the CLI spells them, the rest as text."""
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={'none' if value is None else value}"


def search(arch: str | list[str] | None = None, **options) -> "Experiment":
    """Run a search (or, with ``resume=True``, finish one) and return its experiment.

    ``arch``: a net name, a comma-separated string or a list (or give ``preset=``). ``set``: a dict of config values
    fixed in every trial. Any other ``cifar-tune search`` flag by its python name: ``num_samples``, ``max_epochs``,
    ``space``, ``data_dir``, ``storage``, ``name``, ``objectives``, ``address``, ...
    """
    from search.cli.common import DiskFull
    from search.cli.search import last_line, search_spec
    from search.tuner import run_search
    from trainables.experiment import disk_full_cause

    if arch is not None:
        options["arch"] = arch
    args = _search_namespace(options)
    spec = search_spec(args)
    results = run_search(spec, resume=bool(args.resume))
    errors = [r.error for r in results if r.error is not None]
    full = next((c for c in map(disk_full_cause, errors) if c is not None), None)
    if full is not None:
        raise DiskFull(full.filename or spec.experiment_dir)
    if not any(r.error is None and (r.metrics or {}).get("status") for r in results):
        raise SearchFailed(f"no trial finished ({len(errors)} of {len(results)} errored); the first error: "
                           + (last_line(errors[0]) if errors else "no trial ran"))
    return Experiment(Path(spec.experiment_dir))


def holding_lock(experiment: str, holder: str, run):
    """``run()`` while holding the experiment's lock, after checking that the experiment and its study can be read
    (one line, before the lock file, Ray or a test-split scoring). A search running in it is refused, naming it."""
    from analysis.load import check_study, load_spec
    from trainables.experiment import ExperimentLock, ExperimentLocked

    load_spec(experiment)  # no such experiment: one line, before anything is made in it
    check_study(experiment)
    exp = str(Path(experiment).resolve())
    try:
        lock = ExperimentLock(exp, holder).acquire(create=False)
    except ExperimentLocked as e:
        raise SpecError(str(e)) from None
    try:
        return run()
    finally:
        lock.release()


def open_experiment(path: str | Path) -> "Experiment":
    """An experiment folder made earlier; one line (ExperimentError) if it is not one."""
    from analysis.load import ExperimentError, load_spec

    if not isinstance(path, (str, os.PathLike)):
        raise ExperimentError(f"open_experiment({path!r}): an experiment folder's path (a str or Path)")
    path = Path(path).expanduser()
    load_spec(path)
    return Experiment(path)


class Experiment:
    """One experiment folder. Each property reads the files as they are now (a running search's trials grow)."""

    def __init__(self, path: str | os.PathLike):
        from analysis.load import ExperimentError

        if not isinstance(path, (str, os.PathLike)):
            raise ExperimentError(f"Experiment: a folder's path, got {path!r}")
        self.path = Path(path).resolve()

    def __repr__(self) -> str:
        return f"Experiment({str(self.path)!r})"

    @property
    def spec(self) -> dict:
        """The experiment's spec, as spec.json stores it (resolved flags, spaces, data, versions)."""
        from analysis.load import load_spec

        return load_spec(self.path)["spec"]

    @property
    def trials(self):
        """DataFrame: one row per trial (trial_id, arch, status, epochs, metrics, then the config's values)."""
        from analysis.load import load_experiment

        return load_experiment(self.path)

    @property
    def history(self):
        """DataFrame: one row per (trial, epoch) with the per-epoch metrics."""
        from analysis.load import history_frame, load_trials

        return history_frame(load_trials(self.path))

    def best(self, metric: str = "val_accuracy"):
        """DataFrame: each net's best trial by ``metric`` (the validation split; never the test split): the highest
        accuracy or throughput, the lowest loss, size or latency (the objectives' directions)."""
        from trainables.objectives import OBJECTIVES

        df = self.trials
        direction = None
        if isinstance(metric, str):  # an objective's own direction; a loss goes down, an accuracy up
            direction = OBJECTIVES[metric][0] if metric in OBJECTIVES else \
                "min" if metric.endswith("_loss") else "max" if metric.endswith("_accuracy") else None
        if direction is None or metric not in df.columns:
            metrics = [c for c in df.columns if c in OBJECTIVES or c.endswith(("_loss", "_accuracy"))]
            raise SpecError(f"best: {metric!r} is not a metric of the trials (metrics: {', '.join(metrics)})")
        df = df[df[metric].notna()]
        by_arch = df.groupby("arch")[metric]
        return df.loc[by_arch.idxmin() if direction == "min" else by_arch.idxmax()].reset_index(drop=True)

    def evaluate(self, top_k: int | None = None, repeats: int = 5, train_on: str = "train", epochs: int | None = None,
                 train_images: int | None = None, archs: list[str] | None = None, trials: list[str] | None = None,
                 pareto: bool = False, address: str | None = None, progress=None, cpus_per_run: int = 1,
                 svm_subset: int = 0, svm_k: int | None = None):
        """Retrain each net's top configs ``repeats`` times and score them once on the test split (each config one
        use in the test-split ledger); as ``cifar-tune evaluate``, each keyword its flag (``top_k``: ``--top-k``,
        default 3, not with ``pareto`` or ``trials``; ``svm_subset``: also fit report 000's SVM on that many
        training images, its PCA components ``svm_k``, default 448). ``progress``: a function called with each line
        of text as runs end, or None. Returns a DataFrame, one row per config: test accuracy and weighted F1 means
        with their 95% CI; the whole record (the SVM's too) is in ``self.evaluation``."""
        import pandas as pd

        from analysis.evaluate import evaluate_experiment

        from analysis.load import ExperimentError
        from search.spec import check_address
        from trainables.config import ConfigError

        if isinstance(archs, str) or isinstance(trials, str):  # a str is a list of letters to the checks below
            raise ExperimentError(f"evaluate: archs / trials are lists of names, got {archs or trials!r}")
        _booleans("evaluate", ExperimentError, pareto=pareto)
        check_address(address)
        try:
            record = holding_lock(str(self.path), "cifar-tune api evaluate", lambda: evaluate_experiment(
                self.path, top_k=top_k, repeats=repeats, train_on=train_on, epochs=epochs, train_images=train_images,
                archs=archs, trials=trials, pareto=pareto, address=address, progress=progress,
                cpus_per_run=cpus_per_run, svm_subset=svm_subset, svm_k=svm_k,
                command=f"search.api evaluate({str(self.path)!r})"))
        except ValueError as e:  # as the CLI: evaluate's refusals of its arguments are ValueErrors
            if isinstance(e, ConfigError):  # one of the documented four already
                raise
            raise ExperimentError(str(e)) from None
        rows = []
        for r in record["results"]:
            acc, f1 = r["test_accuracy"], r["weighted_f1"]
            rows.append({"arch": r["arch"], "rank": r.get("rank"), "trial_id": r.get("trial_id"),
                         "test_accuracy": acc["mean"], "test_accuracy_ci95": acc["ci95"], "weighted_f1": f1["mean"],
                         "weighted_f1_ci95": f1["ci95"], "seeds": r["seeds"], "train_images": r.get("train_images"),
                         "config": r.get("config")})
        return pd.DataFrame(rows)

    @property
    def evaluation(self) -> dict | None:
        """The saved evaluation record (evaluation.json), or None before any evaluation; ExperimentError, as every
        other property, where the folder is not an experiment."""
        from analysis.load import load_spec, read_evaluation

        load_spec(self.path)
        return read_evaluation(self.path)

    def report(self, out: str | Path | None = None, top_k: int = 3, without_study: bool = False) -> Path:
        """Write the tables and the HTML report (default into EXP/report); returns the HTML file's path."""
        from analysis.load import ExperimentError
        from analysis.report import REPORT_DIR, REPORT_FILE, write_report

        _booleans("report", ExperimentError, without_study=without_study)
        write_report(self.path, out=out, top_k=top_k, quiet=True, without_study=without_study)
        return (Path(out) if out else self.path / REPORT_DIR) / REPORT_FILE
