"""``cifar-tune data``: what data was found, its splits, class counts and cache."""
from __future__ import annotations

from search.cli.common import CliError, add_json, emit_json

DATASET_FLAG_HELP = ("cifar10 (default), cifar100, fashion_mnist, mnist, kmnist, svhn, or your own: "
                     "path/to/data.py:Name, pkg.module:attr, a cifar_tune.datasets entry point (docs/data.md)")



def cmd_data(args) -> int:
    from trainables.data import DataError, load_dataset

    if args.val_size < 0:
        raise CliError(f"--val-size must be >= 0, got {args.val_size}")
    ds = load_dataset(args.data_dir, args.dataset, download=not args.no_download)
    try:
        summary = ds.summary(args.val_size)
    except DataError as e:  # its hint is the trial config's spelling; this command's flag is --val-size
        raise CliError(str(e).replace("--set val_size=", "--val-size ")) from None
    if args.json:
        emit_json(summary)
        return 0
    print(f"source  {summary['source']}\nname    {summary['name']}  image {summary['image_shape']}  "
          f"classes {len(summary['classes'])}\ncache   {summary['cache']}\n"
          f"splits  train {summary['train']:,}  val {summary['val']:,}  test {summary['test']:,}")
    print("class counts (train+val / test):")
    for c in summary["classes"]:
        print(f"  {c:<14} {summary['class_counts']['trainval'][c]:>6} {summary['class_counts']['test'][c]:>6}")
    return 0



def add(sub) -> None:
    d = sub.add_parser("data", help="show what data was found, split sizes, class counts, cache")
    d.add_argument("--data-dir", default=None)
    d.add_argument("--dataset", default="cifar10", help=DATASET_FLAG_HELP)
    d.add_argument("--val-size", type=int, default=5000)
    d.add_argument("--no-download", action="store_true", help="never download; fail if nothing is found")
    add_json(d)
    d.set_defaults(func=cmd_data)
