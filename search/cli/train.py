"""``cifar-tune train``: one training run, no search."""
from __future__ import annotations

import json
from pathlib import Path

from search.cli.common import CliError, add_json, add_set, assignments, emit_json
from search.cli.data import DATASET_FLAG_HELP

# What a resumed run may set differently from its checkpoint: more (or fewer) epochs, where it runs and reads its
# data, how often it saves. Anything else would train the rest of the run as another config.
RESUME_MAY_CHANGE = ("epochs", "device", "data_dir", "checkpoint_every", "compile", "latency_batch")


def _unique_keys(pairs: list) -> dict:
    """A JSON object whose key is written twice is refused (json keeps the last without a word)."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} is written twice")
        seen.add(key)
    return dict(pairs)


def _train_config(args) -> dict:
    from trainables.config import validate_value

    config: dict = {}
    if args.config:
        path = Path(args.config)
        try:
            loaded = json.loads(path.read_text(), object_pairs_hook=_unique_keys)
        except (OSError, ValueError) as e:
            raise CliError(f"--config {args.config!r}: {e}") from None
        except RecursionError:
            raise CliError(f"--config {args.config!r}: nested too deeply to read (a config is a flat object)") from None
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
    config.update(assignments(args.set))
    return {k: validate_value(k, v) for k, v in config.items()}


def cmd_train(args) -> int:
    from trainables.config import resolve_config
    from trainables.data import load_dataset
    from trainables.train import load_state, pick_device, print_report, save_state, train

    cfg = resolve_config(_train_config(args))  # every bad value fails here, before data or model exist
    pick_device(cfg["device"])  # a device this machine lacks: one line now, not after the data loads
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
        changed = sorted(k for k in set(saved) | set(cfg) if k not in RESUME_MAY_CHANGE and saved.get(k) != cfg.get(k))
        if changed:  # the rest of the run would train another config than its first epochs did
            raise CliError(f"--resume: the checkpoint in {args.checkpoint_dir!r} was trained with "
                           + ", ".join(f"{k}={saved.get(k)!r}" for k in changed) + "; this command gives "
                           + ", ".join(f"{k}={cfg.get(k)!r}" for k in changed) + " (give the same values)")
        if cfg["epochs"] <= resume_state["epoch"]:
            raise CliError(f"--resume: the checkpoint in {args.checkpoint_dir!r} has trained "
                           f"{resume_state['epoch']} epochs already; epochs={cfg['epochs']} leaves none to train")
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
        emit_json({"event": "final", "config": cfg, **final})
    return 0



def add(sub) -> None:
    t = sub.add_parser("train", help="one training run, no search")
    t.add_argument("--arch", default=None)
    t.add_argument("--data-dir", default=None)
    t.add_argument("--dataset", default=None, help=DATASET_FLAG_HELP + " (the config key dataset)")
    add_set(t, "config value (repeatable)")
    t.add_argument("--config", default=None, help="JSON file with a config (e.g. a row of a report)")
    t.add_argument("--checkpoint-dir", default=None, help="save a checkpoint here after each epoch")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    add_json(t, "JSON lines; the last holds the final metrics")
    t.set_defaults(func=cmd_train)
