"""The model zoo: one module per report, every net registered by name.

Every module of this package is imported here, so a net added in a new module is registered by its ``@register``
alone (docs/add-a-net.md). A user's net from outside the repo comes in through :func:`resolve_arch`.

>>> from trainables.models import create_model, list_models
>>> "origin_net" in list_models()
True
"""
import importlib
import pkgutil

from trainables.models.registry import (KNOBS, NET_GROUP, NORMS, ArchSpec, count_params, create_model, get_arch,
                                        list_models, list_user_nets, register, resolve_arch)

# Importing the report modules (and any other module here) registers their nets.
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["KNOBS", "NET_GROUP", "NORMS", "ArchSpec", "count_params", "create_model", "get_arch", "list_models",
           "list_user_nets", "register", "resolve_arch"]
