"""``python -m search.cli``: the ``cifar-tune`` command."""
import sys

from search.cli import run

sys.exit(run())
