"""Image-level cohorts: phantoms imaged on simulated scanners, their pyradiomics features, and their known truth.

An :class:`~harmony.harmonize.benchmark.cohorts.ImageScenario` says what to simulate with harmony's scanner simulator
(:func:`harmony.phantoms.cohort.simulate_cohort`) and which pyradiomics features to extract; the workflow
(:mod:`harmony.workflows.benchmark`) renders and extracts once per seed and hands the table to
:func:`image_cohort`. The scanner is the site. Every subject is imaged on every scanner of the study; the
cohort observes each subject on one of them (a balanced, seeded assignment), and the subject's clean value is
the mean of its features over all the scanners: what it would measure if the scanner did not depend on the
site, the value harmonization is meant to recover (simulated, not estimated from the observed data). The
biology is the subjects' latent lesion properties (the ``truth_*`` columns), standardised into the design.
Replicates are different random splits of the one extracted cohort into training and held-back subjects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.harmonize.benchmark.cohorts import SITE, Cohort
from harmony.phantoms.specs import SUBJECT

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


def image_cohort(table: pd.DataFrame, covariates: list[str] | None = None, *, seed: int = 0) -> ImageCohort:
    """An image-level cohort from its extracted table: every subject imaged on every scanner.

    Parameters
    ----------
    table : DataFrame
        One row per scan: the feature columns (every other column), the scanner in ``site``, the subject in
        ``subject``, the covariates and the latent lesion properties in ``truth_*`` (``truth_volume_mm3``, which
        follows from the radius, is left out of the design).
    covariates : list of str, optional
        Columns of ``table`` a harmonizer is told.
    seed : int, default 0
        Seeds which scanner each subject is observed on (balanced over the scanners).

    Returns
    -------
    ImageCohort
        One row per subject: its features on its scanner, and their mean over all scanners as the clean value.

    Raises
    ------
    ValueError
        Without a latent or ``subject`` column, a subject not imaged on every scanner exactly once, or a
        feature or latent that is not finite.

    Examples
    --------
    Two scanners shift a feature by -1 and +1; each subject is observed on one, its clean value is the
    mean of the two:

    >>> truth = np.arange(6.0)
    >>> table = pd.DataFrame({"f": np.concatenate([truth - 1, truth + 1]), "site": np.repeat(["a", "b"], 6),
    ...                       "subject": np.tile([f"s{i}" for i in range(6)], 2), "truth_radius_mm": np.tile(truth, 2)})
    >>> cohort = image_cohort(table)
    >>> cohort.clean[:, 0].tolist(), sorted(np.unique(cohort.site, return_counts=True)[1].tolist())
    ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [3, 3])
    >>> bool(np.all(np.abs(cohort.X - cohort.clean) == 1))
    True
    """
    latents = [c for c in table.columns if c.startswith(schema.TRUTH_PREFIX) and c != "truth_volume_mm3"]
    covariates = list(covariates or [])
    if not latents or SUBJECT not in table.columns:
        raise ValueError(f"an image-level cohort needs {SUBJECT!r} and truth_* columns, got {list(table.columns)}")
    features = [c for c in table.columns if c not in (schema.SITE, SUBJECT, *covariates)
                and not c.startswith(schema.TRUTH_PREFIX)]
    sites = np.unique(table[schema.SITE].astype(str))
    scans = table.assign(**{schema.SITE: table[schema.SITE].astype(str)}).sort_values([SUBJECT, schema.SITE])
    counts = scans.groupby(SUBJECT)[schema.SITE].agg(lambda s: tuple(s))
    incomplete = counts[counts != tuple(sites)]
    if len(incomplete):
        raise ValueError(f"every subject must be imaged once on each scanner {sites.tolist()}; subject "
                         f"{incomplete.index[0]!r} has {list(incomplete.iloc[0])}")
    subjects = counts.index.to_numpy()
    values = scans[features].to_numpy(float).reshape(len(subjects), len(sites), len(features))
    first = scans.drop_duplicates(SUBJECT).reset_index(drop=True)
    truth = first[latents].to_numpy(float)
    if not (np.isfinite(values).all() and np.isfinite(truth).all()):
        raise ValueError("an image-level cohort's features and truth must be finite")
    rng = np.random.default_rng(np.random.SeedSequence([seed, len(subjects)]))
    observed = rng.permutation(np.resize(np.arange(len(sites)), len(subjects)))
    X = values[np.arange(len(subjects)), observed]
    design = (truth - truth.mean(axis=0)) / np.where(truth.std(axis=0) > 0, truth.std(axis=0), 1.0)
    return ImageCohort(features, X, values.mean(axis=1), sites[observed], first[covariates], design)
