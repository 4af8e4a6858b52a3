"""Benchmarks read natively: one adapter module per published format (see base.py).

Importing the package imports every adapter module beside base.py, which registers it.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
