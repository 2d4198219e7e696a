"""The exceptions harmony raises on bad input; the CLI turns them into one line and exit code 2."""

from __future__ import annotations


class HarmonyError(ValueError):
    """Bad input: the message names the file, key or column and the value received."""


class ConfigError(HarmonyError):
    """An experiment, design, phantom or settings file that does not validate."""


class SchemaError(HarmonyError):
    """A table that does not follow the contract in :mod:`harmony.schema`."""


class CaseError(HarmonyError):
    """A case (image and mask) that cannot be used: missing, unreadable or inconsistent files."""
