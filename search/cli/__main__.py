"""``python -m search.cli``: the ``cifar-tune`` command."""
import sys

from search.cli import main

sys.exit(main())
