"""What the ComBat family's composite estimators (CovBat, Nested and GMM ComBat) share: metadata requests,
fit_transform, and their versioned JSON model files."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from harmony.core.files import read_json, write_json
from harmony.core.version import __version__
from harmony.harmonize.combat import _require_batch
from harmony.harmonize.inputs import HarmonizationError, HarmonizationWarning

__all__ = ["FamilyEstimator"]


@contextmanager
def _inner_steps() -> Iterator[None]:
    """Silence the inner ComBat steps' warning about values below a training bound: it is given once, on the
    composite's output (the first step's ``_warn_below_bound``), not on intermediate results."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ComBat: .* never negative in fit", category=HarmonizationWarning)
        yield


class FamilyEstimator(TransformerMixin, BaseEstimator):
    """Base of the composite ComBat estimators: ``batch``/``covariates`` metadata and a versioned JSON model.

    A subclass sets ``_format`` and ``_format_version`` and implements ``fit``, ``transform``, ``to_dict``
    and ``_from_dict`` (reading a checked ``data``).

    Examples
    --------
    >>> from harmony.harmonize.covbat import CovBat
    >>> issubclass(CovBat, FamilyEstimator)
    True
    """

    __metadata_request__fit: ClassVar[dict] = {"batch": True, "covariates": True}
    __metadata_request__transform: ClassVar[dict] = {"batch": True, "covariates": True}
    _format = ""
    _format_version = 1
    _batch_required = True  # GMM ComBat may find its only batch itself

    def fit_transform(self, X: Any, y: Any = None, *, batch: Any = None,
                      covariates: pd.DataFrame | None = None) -> Any:
        """Fit on ``X`` and harmonize it (``fit``, then ``transform`` with the same batch and covariates).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Finite feature values.
        y : None
            Ignored; it is not the batch.
        batch : array-like
            The batch of each sample (see the estimator's ``fit``; GMM ComBat takes None).
        covariates : DataFrame, optional
            Biological covariates whose effects are preserved.

        Returns
        -------
        X_harmonized : ndarray or DataFrame
            X's type, index and column order.
        """
        if self._batch_required:
            _require_batch("fit_transform", batch, y)
        return self.fit(X, y, batch=batch, covariates=covariates).transform(X, batch=batch, covariates=covariates)

    def _header(self) -> dict[str, Any]:
        return {"format": self._format, "format_version": self._format_version, "harmony_version": __version__,
                "params": self.get_params()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<model>") -> Any:
        """Rebuild a fitted model from its ``to_dict`` output.

        Parameters
        ----------
        data : dict
            What ``to_dict`` returned (e.g. read from a JSON file).
        source : str, default "<model>"
            Where ``data`` came from, for messages.

        Returns
        -------
        estimator
            The fitted model.

        Raises
        ------
        HarmonizationError
            When ``data`` is not this estimator's model, its version is not supported, or it is damaged.
        """
        name = cls.__name__
        if not isinstance(data, dict) or data.get("format") != cls._format:
            raise HarmonizationError(f"{source}: not a harmony {name} model (format "
                                     f"{data.get('format') if isinstance(data, dict) else None!r})")
        if data.get("format_version") != cls._format_version:
            raise HarmonizationError(f"{source}: {name} model format_version {data.get('format_version')!r} is not "
                                     f"supported (this harmony reads {cls._format_version})")
        try:
            return cls._from_dict(data, source)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HarmonizationError(f"{source}: damaged {name} model ({type(exc).__name__}: {exc})") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model as versioned JSON (atomically).

        Parameters
        ----------
        path : str or path-like
            The file to write.

        Returns
        -------
        Path
            The file written.
        """
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Any:
        """Read a model written by ``save``.

        Parameters
        ----------
        path : str or path-like
            A JSON file written by ``save``.

        Returns
        -------
        estimator
            The fitted model.

        Raises
        ------
        HarmonizationError
            When the file is not a supported, intact model of this estimator.
        """
        return cls.from_dict(read_json(path), source=str(path))
