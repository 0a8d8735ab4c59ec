"""``cifar-tune reproduce``: a report's nets, searched and finally tested under its protocol (search.reproduce)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from search.cli.common import add_set, assignments, comma_list
from search.reproduce import (STATE_FILE, TABLE_FILE, get_plan, list_plans, markdown_table, plan_listing,
                              run_reproductions)
from search.spec import SpecError


def _max_concurrent(text: str | None) -> int:
    if text is None:
        return 0
    value = text.strip()
    if not value.isdigit() or int(value) < 1:
        raise SpecError(f"--max-concurrent {text!r}: an integer >= 1 (trials of a search at once; leave it out for "
                        f"as many as the machine holds)")
    return int(value)



def cmd_reproduce(args) -> int:
    from search.spec import default_storage
    fixed = assignments(args.set)
    if "epochs" in fixed:
        raise SpecError("--set epochs=...: the plan sets the epochs (see `cifar-tune reproduce --list`)")
    if args.data_dir:
        fixed["data_dir"] = str(Path(args.data_dir).resolve())
    reports = list(args.report or [])
    for r in reports:
        get_plan(r)  # an unknown report: one line naming it and the known ones
    max_concurrent = _max_concurrent(args.max_concurrent)
    train_images = None
    if args.train_images is not None:
        value = args.train_images.strip().lower()
        if value != "all" and not (value.isdigit() and int(value) >= 1):
            raise SpecError(f"--train-images {args.train_images!r}: an integer >= 1, or 'all'")
        train_images = "all" if value == "all" else int(value)
    archs = comma_list(args.archs, "--archs")
    options = dict(repeats=args.repeats, fixed=fixed, archs=archs, num_samples=args.num_samples,
                   max_epochs=args.max_epochs, final_epochs=args.final_epochs, train_images=train_images,
                   max_concurrent=max_concurrent)
    if args.list:  # the plan a run with these options would run, checked as that run checks them
        print("\n".join(plan_listing(reports, storage=args.storage or "", name=args.name or "", **options)))
        return 0
    if not reports:
        raise SpecError("reproduce: name a report (e.g. report003), or --list")
    from search.tuner import SearchInterrupted, interrupted_exit

    again = " ".join(shlex.quote(a) for a in ["cifar-tune", *sys.argv[1:]]) if sys.argv[1:2] == ["reproduce"] \
        else f"cifar-tune reproduce {' '.join(reports)} (with the same options)"
    storage = args.storage or default_storage()
    try:
        records = run_reproductions(reports, storage=storage, name=args.name or "", searches_only=args.searches_only,
                                    **options)
    except (SearchInterrupted, KeyboardInterrupt) as e:
        return interrupted_exit(e, "cifar-tune reproduce", "finished trials and final runs are saved", again)
    for report, record in zip(reports, records):
        if record is None:  # --searches-only
            continue
        print("\n" + markdown_table(record))
        root = Path(storage).expanduser().resolve() / (args.name or f"reproduce-{report}")
        print(f"wrote {root / STATE_FILE}, {root / TABLE_FILE} and each net's report/report.html")
    return 0



def add(sub) -> None:
    r = sub.add_parser("reproduce", help="a report's nets: tuned search -> final test runs -> its tables beside ours")
    r.add_argument("report", nargs="*", help=f"one or more of: {', '.join(list_plans())} (run in the order given)")
    r.add_argument("--list", action="store_true",
                   help="print every plan's (or the named ones') epochs and ETA with the options given, exit")
    r.add_argument("--searches-only", action="store_true",
                   help="run (or finish) the searches and stop before the final runs; the same command without it "
                        "goes on")
    r.add_argument("--data-dir")
    r.add_argument("--repeats", type=int, default=None, help="seeds per final config (default: the plan's, 5 or 3)")
    r.add_argument("--name", help="default: reproduce-REPORT (one report only)")
    r.add_argument("--storage", help="results root (default ~/cifar-tune-results)")
    add_set(r, "fix a config value everywhere")
    r.add_argument("--archs", help="only these nets of the report(s)")
    r.add_argument("--num-samples", type=int, default=None, help="fewer trials (a smaller run of the same plan)")
    r.add_argument("--max-epochs", type=int, default=None,
                   help="a shorter search horizon (budget and rungs scale); the final runs': --final-epochs")
    r.add_argument("--final-epochs", type=int, default=None, help="epochs of each final run (default: the plan's)")
    r.add_argument("--train-images", default=None, metavar="N|all",
                   help="images per final run (default: as many as the report's final model; all: the whole split)")
    r.add_argument("--max-concurrent", default=None, metavar="N",
                   help="trials of a search at once (default: as many as the machine holds); kept by a rerun")
    r.set_defaults(func=cmd_reproduce)
