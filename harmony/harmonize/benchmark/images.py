"""Image-level cohorts: phantoms imaged on simulated scanners, their pyradiomics features, and their known truth.

An :class:`~harmony.harmonize.benchmark.cohorts.ImageScenario` says what to simulate with harmony's scanner simulator
(:func:`harmony.phantoms.cohort.simulate_cohort`) and which pyradiomics features to extract; the workflow
(:mod:`harmony.workflows.benchmark`) renders and extracts once per seed and hands the table to
:func:`image_cohort`. The scanner is the site. The biology is the subjects' latent lesion properties (the
``truth_*`` columns): the design is those latents, standardised, and a feature's clean value (the same subject
without its scanner) is the part of it the latents explain: the least-squares fit of the feature on the latents
and the scanner (sum-to-zero coded) over all subjects, with the scanner's term left out. Replicates are
different random splits of the one extracted cohort into training and held-back subjects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.harmonize.benchmark.cohorts import SITE, Cohort

__all__ = ["ImageCohort", "image_cohort"]


@dataclass
class ImageCohort:
    """The extracted subjects of an image-level cohort, with their truth (see the module docstring).

    Parameters
    ----------
    features : list of str
    X, clean : ndarray of shape (n, p)
        Extracted features and their clean values.
    site : ndarray of str, shape (n,)
        The scanner of each subject.
    covariates : DataFrame
        The covariates a harmonizer is told.
    design : ndarray of shape (n, q)
        The standardised latent lesion properties.
    """

    features: list[str]
    X: np.ndarray
    clean: np.ndarray
    site: np.ndarray
    covariates: pd.DataFrame
    design: np.ndarray

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per feature, its natural range: 0 below for a feature never negative in the cohort, else unbounded.

        Returns
        -------
        (ndarray, ndarray)
        """
        lower = np.where(self.X.min(axis=0) >= 0, 0.0, -np.inf)
        return lower, np.full(len(self.features), np.inf)

    def split(self, n_train: int, n_test: int, rng: np.random.Generator) -> tuple[Cohort, Cohort]:
        """A random split of every site's subjects into ``n_train`` training and ``n_test`` held-back ones.

        Parameters
        ----------
        n_train, n_test : int
        rng : numpy.random.Generator

        Returns
        -------
        (Cohort, Cohort)

        Raises
        ------
        ValueError
            When a site has fewer than ``n_train + n_test`` subjects.
        """
        train, test = [], []
        for site in np.unique(self.site):
            rows = rng.permutation(np.flatnonzero(self.site == site))
            if len(rows) < n_train + n_test:
                raise ValueError(f"site {site!r} has {len(rows)} subjects, fewer than n_train + n_test = "
                                 f"{n_train + n_test}")
            train.append(rows[:n_train])
            test.append(rows[n_train:n_train + n_test])
        return self._cohort(np.concatenate(train)), self._cohort(np.concatenate(test))

    def _cohort(self, rows: np.ndarray) -> Cohort:
        site = self.site[rows]
        return Cohort(self.X[rows], self.clean[rows], pd.DataFrame({SITE: site}), site,
                      self.covariates.iloc[rows].reset_index(drop=True), self.design[rows])


def image_cohort(table: pd.DataFrame, covariates: list[str] | None = None) -> ImageCohort:
    """An image-level cohort from its extracted table: features, ``site`` and ``truth_*`` columns.

    Parameters
    ----------
    table : DataFrame
        One row per case: the feature columns (every other column), the scanner in ``site``, the covariates and
        the latent lesion properties in ``truth_*`` (``truth_volume_mm3``, which follows from the radius, is left
        out of the design).
    covariates : list of str, optional
        Columns of ``table`` a harmonizer is told.

    Returns
    -------
    ImageCohort

    Raises
    ------
    ValueError
        Without a latent column, or with a feature or latent that is not finite.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=60)
    >>> site = np.repeat(["a", "b", "c"], 20)
    >>> table = pd.DataFrame({"f": 2 * truth + (site == "b") + rng.normal(0, 0.1, 60), "site": site,
    ...                       "truth_radius_mm": truth})
    >>> cohort = image_cohort(table)
    >>> bool(np.corrcoef(cohort.clean[:, 0], truth)[0, 1] > 0.999)
    True
    """
    latents = [c for c in table.columns if c.startswith(schema.TRUTH_PREFIX) and c != "truth_volume_mm3"]
    covariates = list(covariates or [])
    features = [c for c in table.columns if c not in (schema.SITE, *covariates) and not c.startswith(schema.TRUTH_PREFIX)]
    if not latents:
        raise ValueError(f"an image-level cohort needs truth_* columns, got {list(table.columns)}")
    X, truth = table[features].to_numpy(float), table[latents].to_numpy(float)
    if not (np.isfinite(X).all() and np.isfinite(truth).all()):
        raise ValueError("an image-level cohort's features and truth must be finite")
    design = (truth - truth.mean(axis=0)) / np.where(truth.std(axis=0) > 0, truth.std(axis=0), 1.0)
    site = table[schema.SITE].astype(str).to_numpy()
    levels = np.unique(site)
    coded = np.column_stack([(site == level).astype(float) - (site == levels[-1]) for level in levels[:-1]]
                            or [np.zeros((len(X), 0))])
    D = np.column_stack([np.ones(len(X)), design, coded])
    coef, *_ = np.linalg.lstsq(D, X, rcond=None)
    clean = D[:, :1 + design.shape[1]] @ coef[:1 + design.shape[1]]
    return ImageCohort(features, X, clean, site, table[covariates].reset_index(drop=True), design)
