"""The ``cifar-tune`` command line. Each subcommand validates everything before it starts any work.

    cifar-tune archs [--json]
    cifar-tune data  [--data-dir D] [--dataset cifar10] [--json]
    cifar-tune ledger [--data-dir D] [--dataset cifar10] [--arch A] [--json]   # the test split's uses
    cifar-tune train --arch A [--data-dir D] [--set k=v ...] [--config row.json] [--json]
    cifar-tune search ... | presets | report | evaluate      (see --help of each)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class CliError(Exception):
    """One line for the user; the command exits with status 2."""


def _emit_json(obj) -> None:
    print(json.dumps(obj, default=str))


# --------------------------------------------------------------------------------------------- archs / data / train

def arch_options(spec) -> list[str]:
    """The arch-specific config keys a net's builder takes (size knobs such as width, resnet18's stem ...)."""
    import inspect

    from trainables.config import ARCH_KWARGS

    accepted = inspect.signature(spec.builder).parameters
    return [k for k in ARCH_KWARGS if k in accepted]


def cmd_archs(args) -> int:
    from trainables.models import count_params, create_model, get_arch, list_models

    rows = []
    for name in list_models():
        spec = get_arch(name)
        rows.append({"name": name, "report": spec.report, "params": count_params(create_model(name)),
                     "defaults": spec.defaults, "published": spec.published, "description": spec.description,
                     "options": arch_options(spec)})
    if args.json:
        _emit_json(rows)
        return 0
    print(f"{'name':<14} {'params':>11}  {'report':<34} defaults")
    for r in rows:
        d = r["defaults"]
        short = ", ".join(f"{k}={d[k]}" for k in ("optimizer", "lr", "batch_size", "epochs", "dropout", "norm")
                          if k in d)
        print(f"{r['name']:<14} {r['params']:>11,}  {r['report'][:34]:<34} {short}")
    return 0


def cmd_data(args) -> int:
    from trainables.data import load_dataset

    if args.val_size < 0:
        raise CliError(f"--val-size must be >= 0, got {args.val_size}")
    ds = load_dataset(args.data_dir, args.dataset, download=not args.no_download)
    summary = ds.summary(args.val_size)
    if args.json:
        _emit_json(summary)
        return 0
    print(f"source  {summary['source']}\nname    {summary['name']}  image {summary['image_shape']}  "
          f"classes {len(summary['classes'])}\ncache   {summary['cache']}\n"
          f"splits  train {summary['train']:,}  val {summary['val']:,}  test {summary['test']:,}")
    print("class counts (train+val / test):")
    for c in summary["classes"]:
        print(f"  {c:<14} {summary['class_counts']['trainval'][c]:>6} {summary['class_counts']['test'][c]:>6}")
    return 0


def cmd_ledger(args) -> int:
    """Every use of a dataset's test split on this machine (trainables.ledger), per net."""
    from trainables import ledger
    from trainables.data import load_dataset

    ds = load_dataset(args.data_dir, args.dataset, download=False)
    records = ledger.read_dataset(ds.checksum)
    uses = ledger.uses(records, args.arch)
    if args.json:
        _emit_json({"dataset": ds.name, "checksum": ds.checksum, "ledger": str(ledger.ledger_path(ds.checksum)),
                    "uses": uses, "records": [r for r in records if not args.arch or r.get("arch") == args.arch]})
        return 0
    print(f"test split of {ds.name} ({ds.source}, sha256 {ds.checksum[:16]}...): {ledger.ledger_path(ds.checksum)}")
    if not uses:
        print("  never scored on this machine" + (f" for {args.arch}" if args.arch else ""))
    for u in uses:
        acc = f"test_accuracy {sum(u['test_accuracy']) / len(u['test_accuracy']):.4f}" if u["test_accuracy"] else ""
        print(f"  {u['arch']:<14} use {u['use']:>2}  {u['first']}  config {u['config_hash']}  {u['runs']} runs  "
              f"train images {u['train_images'] or 'all'}  {acc}  {u['experiment']}")
    return 0


def _train_config(args) -> dict:
    from trainables.config import parse_assignments, validate_value

    config: dict = {}
    if args.config:
        path = Path(args.config)
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CliError(f"--config {args.config!r}: {e}") from None
        if not isinstance(loaded, dict):
            raise CliError(f"--config {args.config!r}: expected a JSON object of config values")
        loaded = loaded.get("config", loaded)  # accepts a bare config or a report row holding one
        if not isinstance(loaded, dict):
            raise CliError(f"--config {args.config!r}: 'config' is not a JSON object")
        from trainables.config import FIELDS

        for key, value in loaded.items():  # JSON has numbers and booleans: a quoted one is a mistake, not a value
            if key in FIELDS and FIELDS[key][0] is not str and isinstance(value, str):
                raise CliError(f"--config {args.config!r}: {key} must be a JSON {FIELDS[key][0].__name__}, "
                               f"got the string {value!r}")
        config.update(loaded)
    if args.arch:
        config["arch"] = args.arch
    if args.data_dir:
        config["data_dir"] = args.data_dir
    if args.dataset:
        config["dataset"] = args.dataset
    config.update(parse_assignments(args.set))
    return {k: validate_value(k, v) for k, v in config.items()}


def cmd_train(args) -> int:
    from trainables.config import resolve_config
    from trainables.data import load_dataset
    from trainables.train import load_state, print_report, save_state, train

    cfg = resolve_config(_train_config(args))  # every bad value fails here, before data or model exist
    resume_state = None
    if args.resume:
        if not args.checkpoint_dir or not (Path(args.checkpoint_dir) / "checkpoint.pt").exists():
            raise CliError(f"--resume needs an existing checkpoint in --checkpoint-dir, got {args.checkpoint_dir!r}")
        try:
            resume_state = load_state(args.checkpoint_dir)
        except Exception as e:  # torch raises many types for a truncated or garbled file
            raise CliError(f"--resume: cannot read the checkpoint in {args.checkpoint_dir!r} "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        saved = dict(resume_state["config"])
        if saved["arch"] != cfg["arch"]:
            raise CliError(f"checkpoint in {args.checkpoint_dir!r} is for arch {saved['arch']!r}, not {cfg['arch']!r}")
    data = load_dataset(cfg["data_dir"], cfg["dataset"])

    def report(metrics, state):
        if not args.json:
            print_report(metrics)
        else:
            print(json.dumps({"event": "epoch", **metrics}), flush=True)
        if state is not None and args.checkpoint_dir:
            Path(args.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            save_state(state, args.checkpoint_dir)

    final = train(cfg, report=report, resume_state=resume_state, data=data)
    if args.json:
        _emit_json({"event": "final", "config": cfg, **final})
    return 0


# --------------------------------------------------------------------------------------------- parser

DATASET_FLAG_HELP = ("cifar10 (default), cifar100, fashion_mnist, mnist, kmnist, svhn, or your own: "
                     "path/to/data.py:Name, pkg.module:attr, a cifar_tune.datasets entry point (docs/data.md)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cifar-tune", description="Hyperparameter search for CIFAR-10 CNNs on Ray Tune.")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("archs", help="list the registered architectures")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_archs)

    d = sub.add_parser("data", help="show what data was found, split sizes, class counts, cache")
    d.add_argument("--data-dir", default=None)
    d.add_argument("--dataset", default="cifar10", help=DATASET_FLAG_HELP)
    d.add_argument("--val-size", type=int, default=5000)
    d.add_argument("--no-download", action="store_true", help="never download; fail if nothing is found")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_data)

    lg = sub.add_parser("ledger", help="every scoring of the test split on this data (the test-split ledger)")
    lg.add_argument("--data-dir", default=None)
    lg.add_argument("--dataset", default="cifar10", help=DATASET_FLAG_HELP)
    lg.add_argument("--arch", default=None, help="only this net's uses")
    lg.add_argument("--json", action="store_true")
    lg.set_defaults(func=cmd_ledger)

    t = sub.add_parser("train", help="one training run, no search")
    t.add_argument("--arch", default=None)
    t.add_argument("--data-dir", default=None)
    t.add_argument("--dataset", default=None, help=DATASET_FLAG_HELP + " (the config key dataset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config value (repeatable)")
    t.add_argument("--config", default=None, help="JSON file with a config (e.g. a row of a report)")
    t.add_argument("--checkpoint-dir", default=None, help="save a checkpoint here after each epoch")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    t.add_argument("--json", action="store_true", help="JSON lines; the last holds the final metrics")
    t.set_defaults(func=cmd_train)

    from search.commands import add_commands  # search, presets, report

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from analysis.load import ExperimentError
    from search.spec import SpecError
    from trainables.config import ConfigError
    from trainables.data import DataError

    from search.commands import DiskFull
    from trainables.experiment import disk_full_cause, free_space

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, ConfigError, DataError, ExperimentError, SpecError) as e:
        print(f"cifar-tune {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        then = getattr(args, "resume_command", None)
        print(f"cifar-tune {args.command}: interrupted" + (f"; finish it with: {then}" if then else ""),
              file=sys.stderr)
        return 130
    except Exception as e:  # a full disk anywhere (results, checkpoints, optuna.db, report): one line, not 500
        full = e if isinstance(e, DiskFull) else disk_full_cause(e)
        if full is None:
            raise
        path = full.path if isinstance(full, DiskFull) else (full.filename or getattr(args, "experiment_dir", None)
                                                             or getattr(args, "experiment", None) or Path.cwd())
        then = getattr(full, "then", "") or getattr(args, "resume_command", "")
        print(f"cifar-tune {args.command}: error: disk full: no space left writing {str(path)!r} "
              f"({free_space(path)} free there); free some space, then "
              + (f"finish it with: {then}" if then else "run the command again"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
