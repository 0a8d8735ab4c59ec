"""What every subcommand shares: the one-line error, --json, comma lists, --set, the full-disk error."""
from __future__ import annotations

import json
from pathlib import Path

from search.spec import SpecError


class CliError(Exception):
    """One line for the user; the command exits with status 2."""


# What users of Optuna and Keras type for our flags (a hint only where the subcommand has the flag).
SYNONYMS = {"--trials": "--num-samples", "--n-trials": "--num-samples", "--num-trials": "--num-samples",
            "--epochs": "--max-epochs"}


def likely_flag(flag: str, flags: set[str], value: str = "") -> str | None:
    """The flag of ``flags`` a user most likely meant by ``flag``, which is not one of them (None: no good guess):
    another tool's name for ours (``--n-trials``: ``--num-samples``), a config key given as a flag (``--lr``, with
    ``--set`` among ``flags``: ``--set lr=VALUE``), or a near spelling (``--jsn``: ``--json``). The CLI's refusal
    of an unknown flag and the Python API's of an unknown keyword both say it."""
    import difflib

    from trainables.config import FIELDS

    key = flag.removeprefix("--").replace("-", "_")
    if SYNONYMS.get(flag) in flags:
        return SYNONYMS[flag]
    if key in FIELDS and "--set" in flags:
        return f"--set {key}={value or 'VALUE'}"
    return next(iter(difflib.get_close_matches(flag, sorted(flags), n=1, cutoff=0.7)), None)


def emit_json(obj) -> None:
    print(json.dumps(obj, default=str))


def add_json(parser, help: str = "machine-readable output") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_set(parser, help: str = "fix a config value (repeatable)") -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def comma_list(value: str | None, option: str) -> list[str] | None:
    """'a,b' -> ['a', 'b'] (None stays None); an empty item ('a,,b', 'a,', '') is refused, not skipped: it is a
    typo, not a request."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise SpecError(f"{option} {value!r}: an empty name in the comma-separated list")
    return items


def assignments(items: list[str], option: str = "--set") -> dict:
    """``--set`` items -> validated config values (trainables.config.parse_assignments), one line if one is bad."""
    from trainables.config import ConfigError, parse_assignments

    try:
        return parse_assignments(items)
    except ConfigError as e:
        message = str(e)
        raise SpecError(message if message.startswith(option) else f"{option} {message}") from None


class DiskFull(Exception):
    """The storage is full; main prints one line with the path, its free space and what to run after."""

    def __init__(self, path, then: str = ""):
        self.path, self.then = Path(path), then
        super().__init__(str(path))

