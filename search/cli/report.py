"""``cifar-tune report``: the tables and report.html of an experiment."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from search.cli.common import add_json
from search.spec import SpecError


def cmd_report(args) -> int:
    from analysis.load import ExperimentError, check_study, experiment_path, load_spec, load_trials, scheduler_record

    if args.json and args.out:  # --json writes no file: the --out folder would stay empty, unsaid
        raise SpecError(f"--json prints the trials and writes no files; --out {args.out!r} is where the tables and "
                        f"report.html go: give one of them")
    try:
        trials = load_trials(args.experiment)
        if args.json and not args.without_study:  # (write_report's load checks it, after the other files)
            check_study(args.experiment)
        if args.json:  # the decisions it prints (load_trials reads a corrupt record as none): refused as report's
            exp = experiment_path(args.experiment)
            scheduler_record(exp, load_spec(exp)["spec"])
    except ExperimentError as e:
        raise SpecError(str(e)) from None
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise SpecError(f"--out {args.out!r} exists and is not a directory")
    without = without_study_note(args.experiment) if args.without_study else None
    if args.json:
        from analysis.load import load_spec
        from analysis.pareto import pareto_summary

        front = pareto_summary(load_spec(args.experiment), trials)  # objectives, pareto, hypervolume
        print(json.dumps({"experiment": str(Path(args.experiment).resolve()), "trials": trials, **front,
                          **({"without_study": without} if without else {})}, default=str))
        return 0
    try:
        from analysis.report import write_report
    except ImportError:
        write_report = None
    if write_report is None:
        for t in trials:
            print(f"{t['trial_id']:<14} {t['arch']:<14} {t['status']:<10} epochs {t['epochs']:>3} "
                  f"val_accuracy {t['val_accuracy'] if t['val_accuracy'] is not None else float('nan'):.4f}")
        return 0
    try:
        return write_report(args.experiment, out=args.out, without_study=args.without_study)
    except ExperimentError as e:  # a half-written asha_state.json or evaluation.json, an unreadable study
        raise SpecError(str(e)) from None



def without_study_note(experiment: str) -> str:
    """Say (on stderr, and return it) that the report comes from the Ray results alone, and why."""
    from analysis.load import load_spec
    from trainables.experiment import study_error

    why = study_error(experiment, load_spec(experiment)["spec"])
    note = ("the trials are read from the Ray results alone, without the Optuna study"
            + (f" ({why})" if why else " (not opened)") + ": the report has no hyperparameter importance")
    print(f"cifar-tune report: note: {note}", file=sys.stderr, flush=True)
    return note



def add(sub) -> None:
    r = sub.add_parser("report", help="tables and report.html for an experiment")
    r.add_argument("experiment")
    r.add_argument("--out", help="output directory (default: EXPERIMENT/report; not with --json)")
    add_json(r, "machine-readable trial summary")
    r.add_argument("--without-study", action="store_true",
                   help="read the trials from the Ray results alone, for an Optuna study that cannot be read "
                        "(no hyperparameter importance)")
    r.set_defaults(func=cmd_report)
