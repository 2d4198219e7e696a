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

    A name's module is imported on first use (PEP 562), and the value cached in the package's
    ``namespace``, so the import happens once.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    namespace : dict
        The package's ``globals()``.
    exports : mapping of str to sequence of str
        Maps a module (relative to ``package``, e.g. ``".combat"``) to the public names it defines.

    Returns
    -------
    (list of str, callable, callable)
        The exported names (for ``__all__``), the module ``__getattr__`` (raises ``AttributeError`` for any
        other name) and the module ``__dir__`` (the exported names and what the namespace already holds).

    Examples
    --------
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
