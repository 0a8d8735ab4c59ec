"""``cifar-tune ledger``: every use of a dataset's test split on this machine, per net."""
from __future__ import annotations

from search.cli.common import add_json, emit_json
from search.cli.data import DATASET_FLAG_HELP


def cmd_ledger(args) -> int:
    """Every use of a dataset's test split on this machine (trainables.ledger), per net."""
    from trainables import ledger
    from trainables.data import load_dataset

    ds = load_dataset(args.data_dir, args.dataset, download=False)
    records, unreadable = ledger.read_counted(ledger.ledger_path(ds.checksum))  # the file read once
    uses = ledger.uses(records, args.arch)
    if args.json:
        emit_json({"dataset": ds.name, "checksum": ds.checksum, "ledger": str(ledger.ledger_path(ds.checksum)),
                   "uses": uses, "records": [r for r in records if not args.arch or r.get("arch") == args.arch],
                   "unreadable_lines": unreadable})
        return 0
    print(f"test split of {ds.name} ({ds.source}, sha256 {ds.checksum[:16]}...): {ledger.ledger_path(ds.checksum)}")
    if unreadable:
        print(f"  {unreadable} line{'s' * (unreadable != 1)} of the ledger could not be read (cut short, or not a "
              f"record): each may be a use not counted below")
    if not uses:
        print("  never scored on this machine" + (f" for {args.arch}" if args.arch else ""))
    for u in uses:
        acc = f"test_accuracy {sum(u['test_accuracy']) / len(u['test_accuracy']):.4f}" if u["test_accuracy"] else ""
        print(f"  {u['arch']:<14} use {u['use']:>2}  {u['first']}  config {u['config_hash']}  {u['runs']} runs  "
              f"train images {u['train_images'] or 'all'}  {acc}  {u['experiment']}")
    return 0


def add(sub) -> None:
    lg = sub.add_parser("ledger", help="every scoring of the test split on this data (the test-split ledger)")
    lg.add_argument("--data-dir", default=None)
    lg.add_argument("--dataset", default="cifar10", help=DATASET_FLAG_HELP)
    lg.add_argument("--arch", default=None, help="only this net's uses")
    add_json(lg)
    lg.set_defaults(func=cmd_ledger)
