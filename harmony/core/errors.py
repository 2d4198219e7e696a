"""The exceptions harmony raises on bad input; the CLI turns them into one line and exit code 2."""

from __future__ import annotations

__all__ = ["HarmonyError", "ConfigError", "SchemaError", "CaseError", "StudyError"]


class HarmonyError(ValueError):
    """Bad input: the message names the file, key or column and the value received.

    The base of every error harmony raises on bad input; a ``ValueError``, so code that already catches
    ``ValueError`` catches it too. ``harmony`` (the CLI) prints its message on one line and exits with code 2.

    Examples
    --------
    >>> from harmony.core.config import Field, Section, validate
    >>> try:
    ...     validate({"seed": -1}, Section({"seed": Field(int, 0, min=0)}), file="run.toml")
    ... except HarmonyError as exc:
    ...     print(type(exc).__name__, "-", exc)
    ConfigError - run.toml: seed: must be >= 0, got -1
    """


class ConfigError(HarmonyError):
    """An experiment, design, phantom or settings file that does not validate.

    The message names the file (or ``--set``), the dotted key and the value received.
    """


class SchemaError(HarmonyError):
    """A table that does not follow its contract in :mod:`harmony.core.schema`.

    The message names the table (and its file or stage), the column and an offending value.
    """


class CaseError(HarmonyError):
    """A case (image and mask) that cannot be used: missing, unreadable or inconsistent files.

    The message names the case and the file.
    """


class StudyError(HarmonyError):
    """A study too small (or too mixed) to answer the question asked of it, e.g. 2 cases for an ICC.

    The message says what is missing and which setting lowers the guard.
    """
