"""Lazy package exports: a family's ``__init__`` names its public API without importing it (torch, transformers),
so ``import actlab.<family>.config`` stays cheap.

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"IAVModel": "model", ...}, globals())
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping


def lazy_exports(package: str, where: Mapping[str, str], namespace: dict) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: name -> the submodule that defines it (``"model"``, or
    ``"model:attr"`` for another attribute name; a name equal to its submodule's is the submodule itself); names
    already defined in ``namespace`` (functions of the ``__init__``) are listed too."""

    def __getattr__(name: str):
        if name in where:
            module, _, attr = where[name].partition(":")
            mod = importlib.import_module(f"{package}.{module}")
            return mod if module == name and not attr else getattr(mod, attr or name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    names = sorted(
        {
            *where,
            *(
                n
                for n, v in namespace.items()
                if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == package
            ),
        }
    )

    def __dir__():
        return names

    return __getattr__, __dir__, names


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return getattr(self, self.__dict__["_actlab_call"])(*args, **kwargs)


def callable_module(module_name: str, function: str) -> None:
    """Make module ``module_name`` callable as its ``function``: ``actlab.ia2.evaluate(cfg)`` runs
    ``actlab.ia2.evaluate.evaluate(cfg)``. A family whose ``evaluate`` function lives in a submodule of that name
    exports it this way: the import system binds the submodule to the package attribute whenever it is imported, so a
    plain function of that name in the ``__init__`` would be replaced by the module."""
    module = sys.modules[module_name]
    module._actlab_call = function
    module.__class__ = _CallableModule
