"""Feature-level cohorts with known truth: a generative model of scanner effects, and the scenarios of the matrix.

A :class:`CohortModel` says how a subject's features arise. On a latent scale, feature ``j`` of a subject of
batch cell ``b`` (the levels of every batch variable, recorded or hidden) is

``latent = mean + design @ coef + shift[b] + sd * scale[b] * (L[site] @ z)``,  ``z ~ N(0, I)``

and the *clean* value, the truth a harmonizer should recover, is the same subject without its scanner:
``mean + design @ coef + sd * (L_pooled @ z)``. ``shift`` and ``log(scale)`` add up over the batch variables
(additive and multiplicative site effects); ``L[site]`` is the Cholesky factor of the site's correlation
(site-specific covariance). The observed feature is the latent one through the marginal of the feature:
``normal`` (itself), ``log`` (``exp``: skewed, positive) or ``logit`` (the logistic: bounded in (0, 1)).

The design holds the covariate effects: a linear or nonlinear function of age and a group (patient/control)
effect for the scenarios, or the user's covariates for a model fitted to their table
(:func:`harmony.harmonize.benchmark.likeme.fit_cohort_model`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

__all__ = [
    "AGE",
    "DEFAULT_MATRIX",
    "GROUP",
    "HIDDEN",
    "LARGE_MATRIX",
    "SITE",
    "Cohort",
    "CohortModel",
    "ImageScenario",
    "Scenario",
    "design_matrix",
    "scenario_model",
    "simulate_cohort",
]

AGE, GROUP, SITE, HIDDEN = "age", "group", "site", "hidden"
_AGE_CENTER, _AGE_SCALE = 50.0, 15.0


@dataclass
class CohortModel:
    """How a cohort's features arise (see the module docstring); all arrays, so it crosses processes.

    Parameters
    ----------
    features : list of str
        Feature names (p).
    mean, sd : ndarray of shape (p,)
        Latent location and noise SD of each feature.
    marginal : list of str
        Per feature ``normal``, ``log`` or ``logit``.
    batches : dict of str to list of str
        The batch variables and their levels; the first is the site (it carries the covariance), the one
        named :data:`HIDDEN` (if any) is not recorded.
    shift, log_scale : dict of str to ndarray of shape (levels, p)
        Location shift (latent units) and log noise scale of each level of each batch variable.
    chol : ndarray of shape (sites, p, p)
        Cholesky factor of each site's noise correlation.
    chol_pooled : ndarray of shape (p, p)
        Cholesky factor of the site-free noise correlation.
    terms : list of dict
        The covariate terms: ``{"column", "kind": linear|nonlinear|level, "center", "scale", "levels"}``.
    coef : ndarray of shape (design columns, p)
        Effect of each design column (:func:`design_matrix`) on each feature.
    covariate_rows : dict of str to DataFrame, optional
        Per site, covariate rows to resample subjects from (a model fitted to data); else the scenario's
        ``age_range`` and ``patient_fraction``.
    age_range : ndarray of shape (sites, 2), optional
    patient_fraction : ndarray of shape (sites,), optional
    """

    features: list[str]
    mean: np.ndarray
    sd: np.ndarray
    marginal: list[str]
    batches: dict[str, list[str]]
    shift: dict[str, np.ndarray]
    log_scale: dict[str, np.ndarray]
    chol: np.ndarray
    chol_pooled: np.ndarray
    terms: list[dict]
    coef: np.ndarray
    covariate_rows: dict[str, pd.DataFrame] | None = None
    age_range: np.ndarray | None = None
    patient_fraction: np.ndarray | None = None

    @property
    def recorded(self) -> list[str]:
        """The batch variables a harmonizer is told."""
        return [name for name in self.batches if name != HIDDEN]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per feature, the natural range of the observed values.

        Returns
        -------
        (ndarray, ndarray)
            Lower and upper bounds: 0 for ``log`` and ``logit`` features (upper 1 for ``logit``), else infinite.
        """
        lower = np.array([0.0 if m in ("log", "logit") else -np.inf for m in self.marginal])
        upper = np.array([1.0 if m == "logit" else np.inf for m in self.marginal])
        return lower, upper


@dataclass
class Cohort:
    """One simulated split (training or held-back subjects).

    Parameters
    ----------
    X, clean : ndarray of shape (n, p)
        Observed features and the same subjects' features without their scanner.
    batches : DataFrame
        The recorded batch variables, one column each.
    truth_batch : ndarray of str
        Each subject's full batch cell, hidden variable included (what a site effect is measured against).
    covariates : DataFrame
        The subjects' covariates.
    design : ndarray of shape (n, d)
        The true design (covariate effects) of the subjects.
    """

    X: np.ndarray
    clean: np.ndarray
    batches: pd.DataFrame
    truth_batch: np.ndarray
    covariates: pd.DataFrame
    design: np.ndarray

    @property
    def site(self) -> np.ndarray:
        """One label per subject: the recorded batch variables joined (what single-batch methods are told)."""
        return _joined(self.batches)

    def subset(self, keep: np.ndarray) -> Cohort:
        """The subjects where ``keep`` is true.

        Parameters
        ----------
        keep : ndarray of bool, shape (n,)

        Returns
        -------
        Cohort
        """
        return Cohort(self.X[keep], self.clean[keep], self.batches[keep].reset_index(drop=True),
                      self.truth_batch[keep], self.covariates[keep].reset_index(drop=True), self.design[keep])


def _joined(frame: pd.DataFrame) -> np.ndarray:
    """Each row's values joined by ``|``."""
    columns = [frame[c].astype(str).to_numpy(dtype=object) for c in frame.columns]
    out = columns[0]
    for column in columns[1:]:
        out = out + "|" + column
    return out.astype(str)


def design_matrix(terms: list[dict], covariates: pd.DataFrame) -> np.ndarray:
    """The true design of covariate effects: one or more columns per term (no intercept).

    Parameters
    ----------
    terms : list of dict
        :attr:`CohortModel.terms`.
    covariates : DataFrame
        The subjects' covariates.

    Returns
    -------
    ndarray of shape (n, d)
        ``linear``: the standardised value; ``nonlinear``: a U shape plus a slope (``2 (u^2 - 1) + u``);
        ``level``: one indicator per level after the first.

    Examples
    --------
    >>> design_matrix([{"column": "age", "kind": "linear", "center": 50.0, "scale": 10.0}],
    ...               pd.DataFrame({"age": [40.0, 60.0]})).ravel().tolist()
    [-1.0, 1.0]
    """
    columns = []
    for term in terms:
        values = covariates[term["column"]]
        if term["kind"] == "level":
            columns += [(values.astype(str) == level).to_numpy(float) for level in term["levels"][1:]]
            continue
        u = (values.to_numpy(float) - term["center"]) / term["scale"]
        columns.append(u if term["kind"] == "linear" else 2.0 * (u**2 - 1.0) + u)
    return np.column_stack(columns) if columns else np.zeros((len(covariates), 0))


def _marginal(latent: np.ndarray, marginal: list[str]) -> np.ndarray:
    out = latent.copy()
    for j, kind in enumerate(marginal):
        if kind == "log":
            out[:, j] = np.exp(latent[:, j])
        elif kind == "logit":
            out[:, j] = 1.0 / (1.0 + np.exp(-latent[:, j]))
    return out


def _covariates(model: CohortModel, site_idx: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    if model.covariate_rows is not None:
        sites = model.batches[model.recorded[0]]
        parts = []
        for k in site_idx:  # one row per subject, resampled from its own site's subjects
            rows = model.covariate_rows[sites[k]]
            parts.append(rows.iloc[[int(rng.integers(len(rows)))]])
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    low, high = model.age_range[site_idx, 0], model.age_range[site_idx, 1]
    age = np.round(rng.uniform(low, high), 1)
    patient = rng.random(len(site_idx)) < model.patient_fraction[site_idx]
    return pd.DataFrame({AGE: age, GROUP: np.where(patient, "patient", "control")})


def simulate_cohort(model: CohortModel, n_per_cell: int, rng: np.random.Generator) -> Cohort:
    """Subjects of every recorded batch cell (``n_per_cell`` each), drawn from ``model``.

    Parameters
    ----------
    model : CohortModel
        The generative model.
    n_per_cell : int
        Subjects per combination of the recorded batch variables' levels (>= 1).
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    Cohort
        Observed and clean features, batches, covariates and the true design.

    Raises
    ------
    ValueError
        When ``n_per_cell`` < 1.

    Examples
    --------
    >>> model = scenario_model(Scenario("demo", n_features=3), np.random.default_rng(0))
    >>> cohort = simulate_cohort(model, 4, np.random.default_rng(1))
    >>> cohort.X.shape, sorted(set(cohort.site.tolist()))
    ((12, 3), ['site1', 'site2', 'site3'])
    """
    if n_per_cell < 1:
        raise ValueError(f"n_per_cell must be >= 1, got {n_per_cell!r}")
    recorded = model.recorded
    grids = np.meshgrid(*[np.arange(len(model.batches[name])) for name in recorded], indexing="ij")
    cells = np.repeat(np.column_stack([g.ravel() for g in grids]), n_per_cell, axis=0)
    n, p = len(cells), len(model.features)
    levels = {name: cells[:, i] for i, name in enumerate(recorded)}
    if HIDDEN in model.batches:
        levels[HIDDEN] = rng.integers(len(model.batches[HIDDEN]), size=n)
    covariates = _covariates(model, levels[recorded[0]], rng)
    design = design_matrix(model.terms, covariates)
    z = rng.standard_normal((n, p))
    biology = model.mean + design @ model.coef
    shift = sum(model.shift[name][idx] for name, idx in levels.items())
    scale = np.exp(sum(model.log_scale[name][idx] for name, idx in levels.items()))
    site_noise = np.einsum("nij,nj->ni", model.chol[levels[recorded[0]]], z)
    observed = biology + shift + model.sd * scale * site_noise
    clean = biology + model.sd * (z @ model.chol_pooled.T)
    batches = pd.DataFrame({name: np.asarray(model.batches[name])[idx] for name, idx in levels.items()
                            if name != HIDDEN})
    truth = pd.DataFrame({name: np.asarray(model.batches[name])[idx] for name, idx in levels.items()})
    return Cohort(_marginal(observed, model.marginal), _marginal(clean, model.marginal), batches,
                  _joined(truth), covariates, design)


@dataclass(frozen=True)
class Scenario:
    """One cell of the scenario matrix: what the simulated scanners do and how the harmonizer is fitted.

    Parameters
    ----------
    name : str
        Its name in the tables.
    n_sites : int, default 3
    n_train, n_test : int, default 30
        Training and held-back subjects per recorded batch cell.
    n_features : int, default 16
    additive : float, default 1.0
        SD of the sites' location shifts, in noise SDs.
    multiplicative : float, default 0.3
        SD of the log of the sites' noise scales.
    age : {"linear", "nonlinear"}, default "linear"
    age_by_site : bool, default False
        Each site recruits a different age range (so age and site are confounded).
    covariance : float, default 0.0
        Strength of a site-specific correlation between features (0: the sites share one correlation).
    marginal : {"normal", "log", "logit"}, default "normal"
        Skewed (``log``) or bounded (``logit``) features.
    confounded : float, default 0.0
        The patient fraction runs from 0.5 - confounded to 0.5 + confounded across sites.
    acquisition : int, default 0
        Several acquisition parameters: this many two-level batch variables instead of one site variable.
    hidden : float, default 0.0
        Location shift SD of a hidden two-level batch (0: none).
    controls_only : bool, default False
        Fit the harmonizer on the training controls only.
    """

    name: str
    n_sites: int = 3
    n_train: int = 30
    n_test: int = 30
    n_features: int = 16
    additive: float = 1.0
    multiplicative: float = 0.3
    age: str = "linear"
    age_by_site: bool = False
    covariance: float = 0.0
    marginal: str = "normal"
    confounded: float = 0.0
    acquisition: int = 0
    hidden: float = 0.0
    controls_only: bool = False


def _correlation(p: int, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    loadings = rng.normal(0, strength, (p, 2))
    cov = loadings @ loadings.T + np.eye(p)
    d = np.sqrt(np.diag(cov))
    return cov / np.outer(d, d)


def scenario_model(scenario: Scenario, rng: np.random.Generator) -> CohortModel:
    """Draw the cohort model of a scenario (effects, covariances, ranges) from ``rng``.

    Parameters
    ----------
    scenario : Scenario
        What the scanners do.
    rng : numpy.random.Generator
        The only source of randomness.

    Returns
    -------
    CohortModel
        The model; :func:`simulate_cohort` draws its subjects.

    Examples
    --------
    >>> model = scenario_model(Scenario("nested", acquisition=3), np.random.default_rng(0))
    >>> model.recorded
    ['manufacturer', 'kernel', 'thickness']
    """
    s, p = scenario, scenario.n_features
    if s.acquisition:
        names = ["manufacturer", "kernel", "thickness", "field", "software"][:s.acquisition]
        batches = {name: [f"{name}{i + 1}" for i in range(2)] for name in names}
    else:
        batches = {SITE: [f"site{k + 1}" for k in range(s.n_sites)]}
    if s.hidden:
        batches[HIDDEN] = ["hiddenA", "hiddenB"]
    n_sites = len(next(iter(batches.values())))
    scale_latent = 0.35 if s.marginal != "normal" else 1.0  # a skewed/bounded feature's latent SD
    shift, log_scale = {}, {}
    for name, levels in batches.items():
        size = s.hidden if name == HIDDEN else s.additive
        shift[name] = rng.normal(0, size * scale_latent, (len(levels), p))
        log_scale[name] = rng.normal(0, 0 if name == HIDDEN else s.multiplicative, (len(levels), p))
    pooled = _correlation(p, rng)
    chol_pooled = np.linalg.cholesky(pooled)
    chol = np.empty((n_sites, p, p))
    for k in range(n_sites):
        v = rng.normal(0, 1, p) * s.covariance
        cov = pooled + np.outer(v, v)
        d = np.sqrt(np.diag(cov))
        chol[k] = np.linalg.cholesky(cov / np.outer(d, d))
    terms = [{"column": AGE, "kind": s.age, "center": _AGE_CENTER, "scale": _AGE_SCALE},
             {"column": GROUP, "kind": "level", "levels": ["control", "patient"]}]
    coef = np.vstack([rng.normal(0, 0.6, p), rng.normal(0, 0.6, p)]) * scale_latent
    if s.age_by_site:
        centers = np.linspace(30, 70, n_sites)
        age_range = np.column_stack([centers - 12, centers + 12])
    else:
        age_range = np.tile([20.0, 80.0], (n_sites, 1))
    mean = rng.normal(-1.0, 0.5, p) if s.marginal == "log" else (
        rng.normal(0, 0.5, p) if s.marginal == "logit" else rng.normal(10, 3, p))
    return CohortModel(features=[f"feature{j:03d}" for j in range(p)], mean=mean, sd=np.full(p, scale_latent),
                       marginal=[s.marginal] * p, batches=batches, shift=shift, log_scale=log_scale, chol=chol,
                       chol_pooled=chol_pooled, terms=terms, coef=coef, age_range=age_range,
                       patient_fraction=np.linspace(0.5 - s.confounded, 0.5 + s.confounded, n_sites))


@dataclass(frozen=True)
class ImageScenario:
    """The image-level cell of the scenario matrix: a small phantom cohort on a few scanner profiles.

    Parameters
    ----------
    name : str, default "image-level"
    profiles : tuple of str
        Built-in scanner profiles (the sites).
    n_train, n_test : int, default 10
        Training and held-back subjects per scanner (each subject is observed on one scanner).
    grid : int, default 24
        Voxels along each axis of the 1 mm phantom grid.
    features : tuple of (str, tuple of str)
        pyradiomics feature classes and features to extract.
    covariates : tuple of str, default ("age",)
        The subjects' covariates a harmonizer is told (age: texture heterogeneity grows with it).
    controls_only : bool, default False
        Always False: the cohort has no groups (kept so :meth:`Cell.of` reads every scenario alike).
    """

    name: str = "image-level"
    profiles: tuple[str, ...] = ("ct_sharp_1mm", "ct_smooth_5mm", "ct_standard_2mm_offset")
    n_train: int = 10
    n_test: int = 10
    grid: int = 24
    features: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("firstorder", ("Mean", "Median", "Variance", "Entropy", "Skewness", "Kurtosis", "Range")),
        ("glcm", ("Contrast", "Correlation", "JointEnergy", "Idm", "JointEntropy")))
    covariates: tuple[str, ...] = (AGE,)
    controls_only: bool = False

    def cohort_spec(self) -> dict:
        """The cohort spec for :func:`harmony.phantoms.cohort.simulate_cohort`.

        Returns
        -------
        dict
            Subjects of varying lesion radius and texture heterogeneity (which grows with age), each imaged on
            every one of :attr:`profiles` (:func:`~harmony.harmonize.benchmark.images.image_cohort` observes it
            on one and takes the mean over all as its clean value).

        Examples
        --------
        >>> ImageScenario().cohort_spec()["cohort"]["subjects"]
        60
        """
        return {"cohort": {"subjects": len(self.profiles) * (self.n_train + self.n_test)},
                "grid": {"size": [self.grid] * 3},
                "lesion": {"radius_mm": 6.0, "intensity": 100.0, "coarseness_mm": 1.5},
                "background": {"intensity": 40.0, "heterogeneity": 4.0},
                "covariates": [{"name": AGE, "distribution": "uniform", "low": 30.0, "high": 80.0}],
                "latent": {"radius_mm": {"distribution": "uniform", "low": 4.5, "high": 8.0},
                           "heterogeneity": {"distribution": "uniform", "low": 4.0, "high": 20.0,
                                             "effects": [{"covariate": AGE, "coef": 0.1, "center": 55.0}]}},
                "scanners": {"profiles": list(self.profiles),
                             "travelling": len(self.profiles) * (self.n_train + self.n_test)}}

    def extraction_params(self) -> dict:
        """The pyradiomics parameters of the extraction.

        Returns
        -------
        dict

        Examples
        --------
        >>> sorted(ImageScenario().extraction_params()["featureClass"])
        ['firstorder', 'glcm']
        """
        return {"setting": {"binWidth": 10, "minimumROIDimensions": 1},
                "featureClass": {name: list(features) for name, features in self.features}}


def _matrix(scale: int) -> tuple[Scenario, ...]:
    base = [
        Scenario("additive", multiplicative=0.0),
        Scenario("multiplicative", additive=0.3, multiplicative=0.6),
        Scenario("nonlinear-age", age="nonlinear", age_by_site=True),
        Scenario("covariance", covariance=2.5),
        Scenario("skewed", marginal="log", additive=1.0, multiplicative=0.5),
        Scenario("bounded", marginal="logit", additive=1.5, multiplicative=0.5),
        Scenario("confounded", confounded=0.35),
        Scenario("controls-only", confounded=0.35, controls_only=True),
        Scenario("acquisition", acquisition=3, n_train=10, n_test=10),
        Scenario("hidden-batch", hidden=1.5),
        Scenario("null-batch-3", n_train=3, additive=0.0, multiplicative=0.0),
        *[Scenario(f"batch-{n}", n_train=n) for n in (3, 5, 10, 20, 50)],
    ]
    if scale == 1:
        return (*base, ImageScenario())
    return tuple(replace(sc, name=f"{sc.name}-p{sc.n_features * scale}", n_features=sc.n_features * scale,
                         n_sites=sc.n_sites + 2 if not sc.acquisition else sc.n_sites) for sc in base) + (
        *base, ImageScenario())


#: The default matrix (16 feature-level scenarios and one image-level one, :class:`ImageScenario`; minutes on
#: 2 cores with the default replicates).
DEFAULT_MATRIX = _matrix(1)
#: A larger matrix for a cluster: the default one, plus each scenario with 4x the features and 5 sites.
LARGE_MATRIX = _matrix(4)
