"""Lazy re-exports for package ``__init__`` modules: a name's module is imported on first use.

``import harmony`` and ``harmony validate`` then load only what they touch, not the whole scientific stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: dict[str, Any],
                 exports: Mapping[str, Sequence[str]]) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for a package that re-exports ``exports``.

    ``exports`` maps a module (relative to ``package``, e.g. ``".combat"``) to the public names it defines.
    A looked-up name is cached in the package's ``namespace``, so the import happens once.

    >>> ns = {}
    >>> names, getattr_, dir_ = lazy_exports("harmony.core", ns, {".config": ["Field"]})
    >>> names, getattr_("Field").__name__, "Field" in ns
    (['Field'], 'Field', True)
    >>> getattr_("Nope")
    Traceback (most recent call last):
    ...
    AttributeError: module 'harmony.core' has no attribute 'Nope'
    """
    owner = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = owner.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(owner))

    return list(owner), __getattr__, __dir__
