"""The model zoo: one module per report, every net registered by name.

>>> from trainables.models import create_model, list_models
>>> "origin_net" in list_models()
True
"""
from trainables.models.registry import (NORMS, ArchSpec, count_params, create_model, get_arch, list_models,
                                        register)

# Importing the report modules registers their nets.
from trainables.models import (report000, report001, report002, report003, report004)  # noqa: E402,F401

__all__ = ["NORMS", "ArchSpec", "count_params", "create_model", "get_arch", "list_models", "register"]
