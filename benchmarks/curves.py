"""Validation learning curves of a few configs, added to a curves record in docs/results (e.g. report001-curves.json).

A diagnostic for a missed target, decided on the validation split only: each run trains one config (a JSON file,
``cifar-tune train``'s config) on the training split and scores every epoch on the validation split; the test split
is never loaded. The run becomes ``runs[KEY]`` of the record ``docs/results/NAME.json`` with its own command, date,
code, device and versions (the record's top-level ones are its first runs'); ``benchmarks.publish`` turns the
record into its table in docs/results.md. A run saves its state every epoch under ``--storage``: the same command
continues a killed run, and a run already in the record is not trained again.

    python -m benchmarks.curves --record report001-curves --key E --what "D with padding='same'" \\
        --config E.json --data-dir ../shared/datasets/cifar10-jpeg.tar.gz --storage /tmp/runs/curves
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from benchmarks.common import REPO, data_dir, machine

RESULTS = REPO / "docs" / "results"
CURVE_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds", "lr")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--record", required=True, help="the record's name in docs/results, e.g. report001-curves")
    p.add_argument("--key", required=True, help="the run's label in the record (a new one)")
    p.add_argument("--what", required=True, help="what the run is, in words (the table's first column)")
    p.add_argument("--config", required=True, help="a JSON config, as for cifar-tune train --config")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--storage", required=True, help="the run's checkpoints; the same command continues a killed run")
    p.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)  # tests write elsewhere
    args = p.parse_args(argv)
    path = Path(args.results) / f"{args.record}.json"
    if not path.is_file():
        p.error(f"--record {args.record}: no {path}")
    try:
        args.config_dict = json.loads(Path(args.config).read_text())
    except (OSError, ValueError) as e:
        p.error(f"--config {args.config}: not a readable JSON config ({e})")
    if not isinstance(args.config_dict, dict):
        p.error(f"--config {args.config}: not a JSON object")
    return args, path


class _Enough(Exception):
    """Raised from the epoch report once ``stop_after`` epochs are trained (and saved)."""


def run(config: dict, checkpoint_dir: Path, stop_after: int | None = None) -> list[dict]:
    """Train ``config`` from its latest state in ``checkpoint_dir`` (if any); returns its curve, one row per epoch.
    ``stop_after``: end after that epoch, the schedule still over the config's epochs (a run's first epochs)."""
    from trainables.train import resume_point, save_state, train

    resume = resume_point(checkpoint_dir, config)
    rows = [] if resume is None else list(resume.get("curve", []))
    if stop_after is not None and len(rows) >= stop_after:
        return rows[:stop_after]

    def report(metrics: dict, state: dict | None) -> None:
        rows.append({k: metrics[k] for k in CURVE_KEYS})
        print(f"curves: epoch {metrics['epoch']}/{metrics['epochs']}: val accuracy {metrics['val_accuracy']:.4f}",
              flush=True)
        if state is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            save_state({**state, "curve": rows}, checkpoint_dir)
        if stop_after is not None and metrics["epoch"] >= stop_after:
            raise _Enough

    try:
        train(config, report=report, resume_state=resume)
    except _Enough:
        pass
    return rows


def main(argv=None) -> int:
    from trainables.config import ConfigError, resolve_config
    from trainables.train import code_version

    args, path = parse(argv)
    record = json.loads(path.read_text())
    if args.key in record["runs"]:
        print(f"curves: run {args.key} is in {path} already; nothing trained")
        return 0
    config = {**args.config_dict, "data_dir": data_dir(args.data_dir)}
    try:
        resolved = resolve_config(config)
    except ConfigError as e:
        print(f"curves: error: --config {args.config}: {e}", file=sys.stderr)
        return 2
    if resolved["val_size"] < 1:
        print(f"curves: error: --config {args.config}: val_size 0 leaves no validation split to score",
              file=sys.stderr)
        return 2
    try:
        curve = run(config, Path(args.storage) / f"{args.record}-{args.key}")
    except KeyboardInterrupt as e:
        from search.tuner import interrupted_exit

        return interrupted_exit(e, "curves", "the epochs trained are saved", "the same command (it goes on from the "
                                "last finished epoch)")
    kept = {k: v for k, v in config.items() if k != "data_dir"}
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.curves", *(argv or sys.argv[1:])])
    record = json.loads(path.read_text())  # again: another run may have been added meanwhile
    record["runs"][args.key] = {"what": args.what, "config": kept, "curve": curve, "command": command,
                                "code": code_version(), "machine": machine()}
    from trainables.experiment import write_json

    write_json(path, record)
    print(f"curves: run {args.key} added to {path}; last val accuracy {curve[-1]['val_accuracy']:.4f}; then: "
          f"python -m benchmarks.publish")
    return 0


if __name__ == "__main__":
    from search.tuner import stop_on_sigterm

    with stop_on_sigterm():  # SIGTERM (benchmarks.long_runs' stop) as Ctrl-C: the work saved, one line, exit 143
        raise SystemExit(main())
