"""``cifar-tune ledger``: every use of a dataset's test split on this machine, per net."""
from __future__ import annotations

from search.cli.common import CliError, add_json, emit_json
from search.cli.data import DATASET_FLAG_HELP


def cmd_ledger(args) -> int:
    """Every use of a dataset's test split on this machine (trainables.ledger), per net."""
    from trainables import ledger
    from trainables.data import load_dataset

    ledger.ledger_dir()  # CIFAR_TUNE_LEDGER_DIR that names a file: one line, before the data is read
    ds = load_dataset(args.data_dir, args.dataset, download=False)
    records, unreadable = ledger.read_counted(ledger.ledger_path(ds.checksum))  # the file read once
    arch = ledger_net(args.arch, records)
    uses = ledger.uses(records, arch)
    if args.json:
        emit_json({"dataset": ds.name, "checksum": ds.checksum, "ledger": str(ledger.ledger_path(ds.checksum)),
                   "uses": uses, "records": [r for r in records if not arch or r.get("arch") == arch],
                   "unreadable_lines": unreadable})
        return 0
    print(f"test split of {ds.name} ({ds.source}, sha256 {ds.checksum[:16]}...): {ledger.ledger_path(ds.checksum)}")
    if unreadable:
        print(f"  {unreadable} line{'s' * (unreadable != 1)} of the ledger could not be read (cut short, or not a "
              f"record): each may be a use not counted below")
    if not uses:
        print("  never scored on this machine" + (f" for {arch}" if arch else ""))
    for u in uses:
        acc = f"test_accuracy {sum(u['test_accuracy']) / len(u['test_accuracy']):.4f}" if u["test_accuracy"] else ""
        print(f"  {u['arch']:<14} use {u['use']:>2}  {u['first']}  config {u['config_hash']}  {u['runs']} runs  "
              f"train images {u['train_images'] or 'all'}  {acc}  {u['experiment']}")
    return 0


def ledger_net(name: str | None, records: list[dict]) -> str | None:
    """``--arch`` as the ledger records it: a net of the registry (or the SVM baseline), a name the ledger has
    records of (a user's net is recorded by its name), or a user's net by its reference (``path.py:Class``, read
    as the name it is recorded by). Anything else is a typo, refused with a near name: "never scored" would have
    read as an answer."""
    if name is None:
        return None
    import difflib

    from analysis.evaluate import SVM_ARCH
    from trainables import plugins
    from trainables.models import list_models, list_user_nets, resolve_arch

    recorded = sorted({r["arch"] for r in records} - set(list_models()))
    known = {*list_models(), *list_user_nets(), *recorded, SVM_ARCH}
    if name in known:
        return name
    if plugins.is_ref(name):
        try:
            return resolve_arch(name).name
        except ValueError as e:  # PluginError (a ConfigError) is one line already; the registry's own refusal too
            raise CliError(f"--arch {e}") from None
    near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    raise CliError(f"--arch: unknown arch {name!r}" + (f" (did you mean {near[0]}?)" if near else "")
                   + f"; known: {', '.join([*list_models(), SVM_ARCH])}"
                   + (f"; in this ledger also: {', '.join(recorded)}" if recorded else "")
                   + " (or a net of your own: path/to/nets.py:Name or package.module:name)")


def add(sub) -> None:
    lg = sub.add_parser("ledger", help="every scoring of the test split on this data (the test-split ledger)")
    lg.add_argument("--data-dir", default=None)
    lg.add_argument("--dataset", default="cifar10", help=DATASET_FLAG_HELP)
    lg.add_argument("--arch", default=None, help="only this net's uses (a net's name, as the ledger records it)")
    add_json(lg)
    lg.set_defaults(func=cmd_ledger)
