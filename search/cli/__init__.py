"""The ``cifar-tune`` command line: one module per subcommand, each with ``add(sub)`` (its flags) and its handler.
Every subcommand validates everything before it starts any work; an error is one line and exit status 2.

    cifar-tune archs     [--json]                                   search/cli/archs.py
    cifar-tune data      [--data-dir D] [--dataset N] [--json]      search/cli/data.py
    cifar-tune ledger    [--data-dir D] [--arch A] [--json]         search/cli/ledger.py (the test split's uses)
    cifar-tune train     --arch A [--set k=v ...] [--json]          search/cli/train.py
    cifar-tune search    ...                                        search/cli/search.py (search.api runs the same)
    cifar-tune presets   [--json]                                   search/cli/presets.py
    cifar-tune report    EXP [--json]                               search/cli/report.py
    cifar-tune evaluate  EXP [--json]                               search/cli/evaluate.py
    cifar-tune reproduce REPORT ... | --list                        search/cli/reproduce.py

Shared by all (search/cli/common.py): the one-line error, ``--json``, comma lists, ``--set``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.cli import archs, data, evaluate, ledger, presets, report, reproduce, search, train
from search.cli.common import CliError  # noqa: F401  (raised by handlers; imported from here by callers)
from search.cli.common import likely_flag
from trainables.compat import parser_actions

SUBCOMMANDS = (archs, data, ledger, train, search, presets, report, evaluate, reproduce)


class Parser(argparse.ArgumentParser):
    """argparse's refusals (a bad value, a missing argument) as every other refusal of the CLI: one line naming it,
    exit status 2, no usage block (``--help`` still prints it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cifar-tune", description="Hyperparameter search for CIFAR-10 CNNs on Ray Tune.")
    sub = p.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add(sub)
    p.commands = sub.choices  # name -> that subcommand's parser
    return p


def unrecognized(command: argparse.ArgumentParser, extra: list[str]) -> str:
    """The refusal of arguments ``command`` does not have, naming the flag it most likely meant (``likely_flag``)."""
    flags = {flag for action in parser_actions(command) for flag in action.option_strings}
    first = next((x for x in extra if x.startswith("--")), "")
    name, _, value = first.partition("=")
    after = extra[extra.index(first) + 1:] if first else []
    if not value and after and not after[0].startswith("-"):
        value = after[0]
    hint = likely_flag(name, flags, value) if name else None
    return (f"unrecognized argument{'s' * (len(extra) > 1)}: {' '.join(extra)}"
            + (f"; did you mean {hint}?" if hint else ""))


def main(argv: list[str] | None = None) -> int:
    from analysis.load import ExperimentError
    from search.spec import SpecError
    from trainables.config import ConfigError
    from trainables.data import DataError

    from search.cli.common import DiskFull
    from search.tuner import stop_on_sigterm, stop_signal
    from trainables.experiment import disk_full_cause, free_space

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = parser.commands[args.command]
    if extra:  # refused by the subcommand that was given them, not by the top level with every subcommand's name
        command.error(unrecognized(command, extra))
    blank = next((a for a in parser_actions(command) if a.option_strings
                  and isinstance(getattr(args, a.dest, None), str) and not getattr(args, a.dest).strip()
                  and getattr(args, a.dest) != a.default), None)
    if blank is not None:  # `--storage ""`: a value lost on the way (an empty shell variable), not "the default"
        print(f"cifar-tune {args.command}: error: {blank.option_strings[0]} {getattr(args, blank.dest)!r}: empty; "
              f"give a value or leave the option out for the default", file=sys.stderr)
        return 2
    with stop_on_sigterm():
        try:
            return args.func(args)
        except (CliError, ConfigError, DataError, ExperimentError, SpecError) as e:
            print(f"cifar-tune {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:  # Ctrl-C, or a SIGTERM a command turned into one (it carries the signal)
            import signal

            signum = stop_signal(e)
            then = getattr(args, "resume_command", None)
            said = f"; finish it with: {then}" if then else getattr(args, "interrupted", "")  # e.g. search's
            print(f"cifar-tune {args.command}: interrupted ({signal.Signals(signum).name}){said}", file=sys.stderr)
            return 128 + signum
        except Exception as e:  # a full disk anywhere (results, checkpoints, optuna.db, report): one line, not 500
            full = e if isinstance(e, DiskFull) else disk_full_cause(e)
            if full is None:
                raise
            path = full.path if isinstance(full, DiskFull) else (
                full.filename or getattr(args, "experiment_dir", None) or getattr(args, "experiment", None)
                or Path.cwd())
            then = getattr(full, "then", "") or getattr(args, "resume_command", "")
            print(f"cifar-tune {args.command}: error: disk full: no space left writing {str(path)!r} "
                  f"({free_space(path)} free there); free some space, then "
                  + (f"finish it with: {then}" if then else "run the command again"), file=sys.stderr)
            return 1


def run(argv: list[str] | None = None) -> int:
    """The ``cifar-tune`` process (console script and ``python -m search.cli``): :func:`main`, then Ray down if a
    command started it. Ray's own exit hook would do the same, later and slower (about 1.3 s more per search on a
    2-core machine). :func:`main` itself leaves Ray as it is, so an in-process caller can see whether it started."""
    try:
        return main(argv)
    finally:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(run())
