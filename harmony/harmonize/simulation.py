"""A feature-level multi-site cohort with known truth, to measure harmonization without images.

Each subject has latent truths (``truth_size``, ``truth_texture``), an age and a group. Every feature is a
noisy linear mix of them, and each site adds its own location shift and noise scale:

``x = mu + truths @ loadings + age/group effects + site_shift + site_scale * noise``

With ``skewed=True`` the same mix, standardised, is the log of a log-normal feature whose site changes
the location slightly (a multiplicative effect) and the log-scale spread strongly (a shape effect), the
situation in which ComBat on the raw scale moves the sites' medians apart.

The image-based cohort is :func:`harmony.phantoms.simulate_cohort`; this one isolates the harmonization.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harmony.core import schema

__all__ = ["TRUTHS", "AGE", "GROUP", "simulate_site_features"]

#: The latent truth columns of the simulated cases table.
TRUTHS = (f"{schema.TRUTH_PREFIX}size", f"{schema.TRUTH_PREFIX}texture")
#: Covariate columns of the simulated cases table.
AGE, GROUP = "age", "group"


def simulate_site_features(*, n_cases: int = 400, n_features: int = 50, n_sites: int = 4, skewed: bool = False,
                           site_shift: float = 1.0, site_scale: float = 0.3, shape: float = 0.6,
                           rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A simulated multi-site cohort: its cases table (site, age, group, truth_*) and long features table.

    Sites are assigned in turn, so they are balanced. See the module docstring for the model.

    Parameters
    ----------
    n_cases : int, default 400
        Number of subjects (``sim0000``, ``sim0001``, ...).
    n_features : int, default 50
        Number of features (``feature000``, ...).
    n_sites : int, default 4
        Number of sites (``scanner1``, ...).
    skewed : bool, default False
        Log-normal features whose sites differ in shape, instead of normal features with shifted means and
        scaled noise.
    site_shift : float, default 1.0
        SD of the sites' location shifts, in units of the feature's noise SD (skewed: 0.05 times it, on
        the log scale).
    site_scale : float, default 0.3
        SD of the log of the sites' noise scales (not skewed only).
    shape : float, default 0.6
        SD of the log of the sites' log-scale spreads (skewed only).
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    cases : DataFrame
        One row per subject: ``case_id``, ``site``, empty ``image`` and ``mask``, ``age``, ``group``
        (``patient`` or ``control``) and the :data:`TRUTHS` (validated against
        :data:`~harmony.core.schema.CASES`).
    features : DataFrame
        One row per subject and feature, all of variant ``original``, repeat 0 (validated against
        :data:`~harmony.core.schema.FEATURES`).

    Examples
    --------
    >>> cases, features = simulate_site_features(n_cases=8, n_features=3, rng=np.random.default_rng(0))
    >>> cases[["site", "group"]].value_counts().shape[0] > 1, features.shape
    (True, (24, 6))
    """
    ids = [f"sim{i:04d}" for i in range(n_cases)]
    site_idx = np.arange(n_cases) % n_sites
    sites = np.array([f"scanner{k + 1}" for k in range(n_sites)])[site_idx]
    truth = rng.normal(size=(n_cases, len(TRUTHS)))
    age = np.round(rng.uniform(20, 80, n_cases), 1)
    patient = rng.random(n_cases) < 0.5
    loadings = rng.normal(0, 1, (len(TRUTHS), n_features))
    age_effect, group_effect = rng.normal(0, 0.3, n_features), rng.normal(0, 0.5, n_features)
    biology = truth @ loadings + np.outer((age - 50) / 10, age_effect) + np.outer(patient, group_effect)
    noise = rng.normal(size=(n_cases, n_features))
    if skewed:
        z = (biology - biology.mean(axis=0)) / biology.std(axis=0)
        spread = np.exp(rng.normal(0, shape, (n_sites, n_features)))[site_idx]
        shift = rng.normal(0, 0.05 * site_shift, (n_sites, n_features))[site_idx]
        values = np.exp(rng.normal(3, 0.5, n_features) + shift + spread * (0.6 * z + 0.8 * noise))
    else:
        sd = rng.uniform(0.5, 2.0, n_features)
        shift = rng.normal(0, site_shift, (n_sites, n_features))[site_idx] * sd
        scale = np.exp(rng.normal(0, site_scale, (n_sites, n_features)))[site_idx]
        values = rng.normal(10, 3, n_features) + biology + shift + scale * sd * noise
    cases = pd.DataFrame({schema.CASE_ID: ids, schema.SITE: sites, schema.IMAGE: "", schema.MASK: "", AGE: age,
                          GROUP: np.where(patient, "patient", "control"),
                          **{name: truth[:, k] for k, name in enumerate(TRUTHS)}})
    names = [f"feature{j:03d}" for j in range(n_features)]
    features = pd.DataFrame({
        schema.CASE_ID: np.repeat(ids, n_features), schema.SITE: np.repeat(sites, n_features),
        schema.VARIANT_ID: schema.ORIGINAL, schema.REPEAT: 0, schema.FEATURE: np.tile(names, n_cases),
        schema.VALUE: values.ravel(),
    })
    return schema.CASES.validate(cases, "simulate_site_features"), schema.FEATURES.validate(features,
                                                                                            "simulate_site_features")
