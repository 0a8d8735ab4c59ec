"""A finished reproduction -> its records in docs/results: what ``benchmarks.publish`` then turns into tables.

    python -m benchmarks.record_reproduction ~/runs/reproduce-report001 --as report001-fair \\
        [--supersedes report001-v2 --why "trained on the report's 40,000 images, test uses on the ledger"] \\
        [--code 4cd9f51]

Writes ``docs/results/NAME.json`` (the experiment's ``reproduce.json``, as written) and ``NAME-trials.json``: every
search trial of every net, its config, status and validation accuracy per epoch (read by ``analysis.load``, as
``cifar-tune report`` reads them), with the experiment's path, its commands and the code that ran it. ``--supersedes``
marks an older record ``superseded_by`` NAME with the reason; the tables keep it, marked. The code is the record's
own (``environment.cifar_tune``, recorded since that field exists); ``--code`` names it for an older run.

Refuses, in one line and before writing anything, a reproduction that has not finished (no ``result`` in its
``reproduce.json``), a name already taken, an unknown, unreadable or already superseded older record, and a net's
experiment that ``analysis.load`` cannot read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.common import REPO

RESULTS = REPO / "docs" / "results"


def trials_record(root: Path, stem: str, record: dict, code: str) -> dict:
    """Every search trial of the reproduction at ``root`` (one experiment per net, as ``record['searches']`` lists)."""
    from analysis.load import load_trials

    trials, nets = [], []
    for net, search in record["searches"].items():
        exp = Path(search["experiment"])
        if not exp.is_dir():  # moved with its parent since it ran: found where it lies now
            exp = root / exp.name
        rows = load_trials(exp)
        nets.append(f"{net}: {len(rows)} trials")
        for t in sorted(rows, key=lambda t: t["trial_id"]):
            trials.append({"net": net, "trial_id": t["trial_id"], "config": t["config"], "status": t["status"],
                           "epochs": t["epochs"], "val_accuracy": [h.get("val_accuracy") for h in t["history"]]})
    return {"what": f"Every trial of {stem}.json's searches ({'; '.join(nets)}): its config, status and validation "
                    f"accuracy per epoch, read from the experiments' result files (analysis.load)",
            "experiment": str(root), "commands": record.get("commands", []), "code": code, "trials": trials}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", help="the reproduction's folder (STORAGE/reproduce-reportNNN, with reproduce.json)")
    p.add_argument("--as", dest="name", required=True, help="the record's name in docs/results, e.g. report001-fair")
    p.add_argument("--supersedes", default=None, help="an older record this one replaces, e.g. report001-v2")
    p.add_argument("--why", default=None, help="why it is replaced (required with --supersedes)")
    p.add_argument("--code", default=None, help="the commit that ran it, for a record from before it named its code")
    p.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)  # tests write elsewhere
    args = p.parse_args(argv)
    results, root = Path(args.results), Path(args.experiment).expanduser().resolve()

    def refuse(msg: str) -> int:
        print(f"record_reproduction: {msg}", file=sys.stderr)
        return 2

    path = root / "reproduce.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return refuse(f"no reproduce.json in {str(root)!r}: not a reproduction's folder")
    except (OSError, ValueError) as e:
        return refuse(f"{str(path)!r} is unreadable: {e}")
    if "result" not in record:
        done = [n for n, s in record.get("searches", {}).items() if s.get("done")]
        return refuse(f"{str(root)!r} has not finished (no result yet; searches done: {', '.join(done) or 'none'}): "
                      f"rerun its reproduce command first")
    if (results / f"{args.name}.json").exists() or (results / f"{args.name}-trials.json").exists():
        return refuse(f"--as {args.name}: docs/results already has that record")
    old = None
    if args.supersedes:
        old_path = results / f"{args.supersedes}.json"
        if not old_path.exists():
            return refuse(f"--supersedes {args.supersedes}: no such record in {results}")
        try:
            old = json.loads(old_path.read_text())
        except (OSError, ValueError) as e:
            return refuse(f"--supersedes {args.supersedes}: {str(old_path)!r} is unreadable: {e}")
        if not isinstance(old, dict):
            return refuse(f"--supersedes {args.supersedes}: {str(old_path)!r} is not a record (a JSON object)")
        if old.get("superseded_by"):
            return refuse(f"--supersedes {args.supersedes}: already superseded by {old['superseded_by']}")
        if not args.why:
            return refuse("--supersedes needs --why: the reason the older record is replaced")
    code = args.code or record["result"].get("environment", {}).get("cifar_tune")
    if not code:
        return refuse("the record does not name the code that ran it: give --code COMMIT")

    from analysis.load import ExperimentError
    from trainables.experiment import write_json

    try:
        trials = trials_record(root, args.name, record, code)
    except ExperimentError as e:  # a net's experiment missing or unreadable: nothing written yet
        return refuse(str(e))
    write_json(results / f"{args.name}.json", record)
    write_json(results / f"{args.name}-trials.json", trials)
    if old is not None:
        write_json(old_path, {**old, "superseded_by": f"{args.name}.json", "why": args.why})
    print(f"record_reproduction: {args.name}.json and {args.name}-trials.json ({len(trials['trials'])} trials) in "
          f"{results}" + (f"; {args.supersedes}.json marked superseded" if old is not None else "")
          + "; next: python -m benchmarks.publish")
    return 0


if __name__ == "__main__":
    sys.exit(main())
