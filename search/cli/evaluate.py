"""``cifar-tune evaluate``: the final test-set runs of an experiment (analysis.evaluate does the work)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from search.cli.common import add_json, comma_list
from search.spec import check_address


def cmd_evaluate(args) -> int:
    """analysis.evaluate under the experiment's lock (it writes evaluation.json into the experiment)."""
    from search.api import holding_lock

    archs = comma_list(args.archs, "--archs")
    trials = comma_list(args.trials, "--trials")
    check_address(args.address)  # before the lock and the data: not Ray's words after them (or never, all saved)
    # for main's line on Ctrl-C or SIGTERM
    args.resume_command = "the same command (saved final runs are kept; one cut short goes on from its last epoch)"
    return holding_lock(args.experiment, "cifar-tune evaluate", lambda: _evaluate(args, archs, trials))


def _evaluate(args, archs, trials) -> int:
    from analysis.evaluate import evaluate_experiment, summary_lines
    from analysis.load import EVALUATION_FILE, ExperimentError

    try:
        record = evaluate_experiment(args.experiment, top_k=args.top_k, repeats=args.repeats, train_on=args.train_on,
                                     epochs=args.epochs, archs=archs, svm_subset=args.svm_subset, svm_k=args.svm_k,
                                     address=args.address, pareto=getattr(args, "pareto", False),
                                     trials=trials,
                                     train_images=getattr(args, "train_images", None),
                                     cpus_per_run=getattr(args, "cpus_per_run", 1),
                                     progress=None if args.json else (lambda line: print(line, flush=True)))
    except ValueError as e:  # the CLI prints an ExperimentError as one line, exit status 2
        raise ExperimentError(str(e)) from None
    if args.json:
        print(json.dumps(record, default=str))
        return 0
    print("\n".join(summary_lines(record)))
    print(f"saved {Path(args.experiment) / EVALUATION_FILE}; next: cifar-tune report {shlex.quote(args.experiment)}")
    return 0



def add(sub) -> None:
    e = sub.add_parser("evaluate", help="final test-set evaluation: retrain the top configs with N seeds, 95%% CIs")
    e.add_argument("experiment")
    e.add_argument("--top-k", type=int, default=None,
                   help="configs per net, ranked by validation accuracy (default 3; not with --pareto or --trials)")
    e.add_argument("--repeats", type=int, default=5, help="seeds per config")
    e.add_argument("--train-on", default="train", choices=["train", "trainval"],
                   help="trainval also trains on the validation split (the table says which)")
    e.add_argument("--epochs", type=int, default=None, help="default: each config's own (the search's max epochs)")
    e.add_argument("--train-images", type=int, default=None,
                   help="train each final run on exactly N images (a report's training-set size); default: all")
    e.add_argument("--cpus-per-run", type=int, default=1,
                   help="CPU cores (torch threads) per final run: more runs fewer at once, each sooner (default 1)")
    e.add_argument("--archs", help="comma-separated subset of the experiment's nets")
    e.add_argument("--svm-subset", type=int, default=0, help="also fit report 000's SVM on N training images")
    e.add_argument("--svm-k", type=int, default=None, help="PCA components of the SVM (default 448; with --svm-subset)")
    e.add_argument("--address", help="Ray cluster: auto or HOST:PORT, or local for a new embedded one")
    e.add_argument("--pareto", action="store_true",
                   help="evaluate the Pareto front's members (see report) instead of the top-k per net")
    e.add_argument("--trials", help="evaluate exactly these trials (comma-separated ids, as in report)")
    add_json(e, "print the saved record")
    e.set_defaults(func=cmd_evaluate)
