"""cifar-tune search spaces: YAML files and the loader that turns one into an Optuna define-by-run function.

    >>> from spaces import load_space
    >>> space = load_space("origin_net")          # shipped spaces/origin_net.yaml, which extends base.yaml
    >>> sorted(space.fixed) == sorted(space.to_dict()["fixed"])
    True

The file format is described in :mod:`spaces.loader`.
"""
from spaces.loader import (NOT_SEARCHABLE, Param, SearchSpace, SpaceError, load_space, shipped_dir,
                           shipped_spaces)

__all__ = ["NOT_SEARCHABLE", "Param", "SearchSpace", "SpaceError", "load_space", "shipped_dir", "shipped_spaces"]
