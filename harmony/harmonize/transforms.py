"""Per-feature monotone transforms applied before ComBat and inverted after it (``ComBat(feature_transform=...)``).

ComBat aligns the mean and variance of each site. Radiomic features are often strongly skewed, and when
sites differ in shape, aligning means and variances on the raw scale can move the sites' medians apart.
Harmonizing on a scale where each feature is close to normal avoids that. Each transform here is fitted
per feature in :meth:`ComBat.fit`, serialises to plain JSON and inverts exactly (to rounding) on the
range it was fitted on:

``"log"``
    natural logarithm; every value must be > 0.
``"yeo-johnson"``
    Yeo-Johnson power transform with the per-feature lambda that maximises the normal log-likelihood
    (:func:`scipy.stats.yeojohnson_normmax`). Where lambda < 0 or > 2 the transform's range is bounded;
    harmonized values beyond that bound cannot be inverted and are set to the training minimum or
    maximum of the feature (with a warning that counts them).
``"quantile-normal"``
    the empirical distribution function learned in fit (at most :data:`N_QUANTILES` quantiles at the
    plotting positions ``(k - 0.5) / m``) mapped to normal scores; both directions interpolate linearly
    between the fitted quantiles and extrapolate linearly beyond them, so the map is strictly monotone.
``"auto"``
    chosen per feature from its training values: none where the absolute sample skewness (adjusted
    Fisher-Pearson, :func:`scipy.stats.skew` with ``bias=False``) is at most :data:`SKEWNESS_THRESHOLD` = 1,
    Bulmer's (1979, *Principles of Statistics*) bound of a "highly skewed" distribution; otherwise ``"log"``
    when every training value is > 0, ``"yeo-johnson"`` when not. The choice, and each feature's skewness,
    are stored in the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import special, stats

from harmony.core.errors import HarmonyError
from harmony.harmonize.inputs import _sample
from harmony.harmonize.settings import TRANSFORMS

__all__ = [
    "N_QUANTILES",
    "SKEWNESS_THRESHOLD",
    "Auto",
    "Identity",
    "Log",
    "QuantileNormal",
    "TransformError",
    "YeoJohnson",
    "make_transform",
    "transform_from_dict",
]

#: Largest number of fitted quantiles per feature for ``"quantile-normal"`` (keeps model.json small).
N_QUANTILES = 1000
#: ``"auto"``: a feature whose absolute skewness exceeds this is transformed (Bulmer 1979: "highly skewed").
SKEWNESS_THRESHOLD = 1.0


class TransformError(HarmonyError):
    """Values a feature transform cannot take (e.g. a non-positive value under ``"log"``)."""



class Identity:
    """No transform: ComBat on the features as they are.

    It is also the interface of every transform here: :meth:`fit`, :meth:`forward`, :meth:`inverse`,
    :meth:`to_dict` and :meth:`from_dict`, documented once here.
    """

    #: The transform's ``feature_transform`` name (None for the identity).
    name = None

    def fit(self, values: np.ndarray, features: Sequence[str], samples: Sequence | None = None) -> Identity:
        """Learn the per-feature parameters from the training values (the identity and log learn none).

        Parameters
        ----------
        values : ndarray of shape (n_samples, n_features)
            Finite training values, one column per feature.
        features : sequence of str
            The feature names, for messages.
        samples : sequence, optional
            The sample labels, for messages (``row <i>`` when None).

        Returns
        -------
        self
            The fitted transform.

        Raises
        ------
        TransformError
            When a value is outside the transform's domain (``"log"``: a value <= 0) or a feature cannot be
            mapped (``"quantile-normal"``: a single distinct quantile).
        """
        return self

    def forward(self, values: np.ndarray, features: Sequence[str], samples: Sequence | None = None) -> np.ndarray:
        """Transform values, one column per fitted feature, onto the scale ComBat works on.

        Parameters
        ----------
        values : ndarray of shape (n_samples, n_features)
            Values of the features of fit, in the same order.
        features : sequence of str
            The feature names, for messages.
        samples : sequence, optional
            The sample labels, for messages (``row <i>`` when None).

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            The transformed values.

        Raises
        ------
        TransformError
            When a value is outside the transform's domain (``"log"``: a value <= 0).
        """
        return values

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Map values from the transformed scale back to the features' scale (inverts :meth:`forward`).

        Parameters
        ----------
        values : ndarray of shape (n_samples, n_features)
            Values on the transformed scale, e.g. harmonized by ComBat.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            The values on the features' scale.

        Warns
        -----
        RuntimeWarning
            ``"yeo-johnson"`` only: when values lie beyond the range the transform can invert; they are set
            to the feature's training minimum or maximum.
        """
        return values

    def to_dict(self) -> dict:
        """The fitted transform as plain JSON-ready data.

        Returns
        -------
        dict
            ``name`` and the fitted parameters; :meth:`from_dict` (or :func:`transform_from_dict`) reads it.
        """
        return {"name": self.name}

    @classmethod
    def from_dict(cls, data: dict) -> Identity:
        """Rebuild the fitted transform from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned.

        Returns
        -------
        Identity
            The fitted transform, of this class.
        """
        return cls()


class Log(Identity):
    """Natural logarithm of positive features.

    Examples
    --------
    >>> import numpy as np
    >>> t = Log().fit(np.array([[1.0], [np.e]]), ["f"])
    >>> t.forward(np.array([[np.e ** 2]]), ["f"]).tolist()
    [[2.0]]
    >>> Log().fit(np.array([[1.0], [0.0]]), ["volume"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    harmony.harmonize.transforms.TransformError: ...: feature 'volume' is 0.0 in sample row 1
    """

    name = "log"

    def fit(self, values, features, samples=None):
        self.forward(values, features, samples)
        return self

    def forward(self, values, features, samples=None):
        bad = ~(values > 0)
        if bad.any():
            i, j = (int(k[0]) for k in np.nonzero(bad))
            raise TransformError(f"feature_transform='log' needs positive values: feature {features[j]!r} is "
                                 f"{float(values[i, j])!r} in sample {_sample(samples, i)}")
        return np.log(values)

    def inverse(self, values):
        return np.exp(values)


class YeoJohnson(Identity):
    """Yeo-Johnson power transform, one maximum-likelihood lambda per feature.

    Parameters
    ----------
    lambdas : array-like of shape (n_features,), optional
        The fitted lambdas; None before :meth:`fit`.
    low, high : array-like of shape (n_features,), optional
        Each feature's training minimum and maximum: where harmonized values that cannot be inverted go.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).lognormal(size=(200, 2))
    >>> t = YeoJohnson().fit(x, ["a", "b"])
    >>> bool(np.allclose(t.inverse(t.forward(x, ["a", "b"])), x))
    True
    """

    name = "yeo-johnson"

    def __init__(self, lambdas=None, low=None, high=None):
        self.lambdas = None if lambdas is None else np.asarray(lambdas, dtype=float)
        self.low = None if low is None else np.asarray(low, dtype=float)
        self.high = None if high is None else np.asarray(high, dtype=float)

    def fit(self, values, features, samples=None):
        with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.lambdas = np.array([stats.yeojohnson_normmax(values[:, j]) for j in range(values.shape[1])])
        self.low, self.high = values.min(axis=0), values.max(axis=0)
        return self

    def forward(self, values, features=None, samples=None):
        lam = np.broadcast_to(self.lambdas, values.shape)
        out = np.empty_like(values)
        pos = values >= 0
        zero, two = np.abs(lam) < np.spacing(1.0), np.abs(lam - 2) < np.spacing(1.0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            m = pos & ~zero
            out[m] = (np.power(values[m] + 1, lam[m]) - 1) / lam[m]
            m = pos & zero
            out[m] = np.log1p(values[m])
            m = ~pos & ~two
            out[m] = -(np.power(1 - values[m], 2 - lam[m]) - 1) / (2 - lam[m])
            m = ~pos & two
            out[m] = -np.log1p(-values[m])
        return out

    def inverse(self, values):
        lam = np.broadcast_to(self.lambdas, values.shape)
        out = np.empty_like(values)
        pos = values >= 0
        zero, two = np.abs(lam) < np.spacing(1.0), np.abs(lam - 2) < np.spacing(1.0)
        bad = np.zeros(values.shape, dtype=bool)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            m = pos & ~zero
            base = lam[m] * values[m] + 1
            out[m], bad[m] = np.power(base, 1 / lam[m]) - 1, base <= 0
            m = pos & zero
            out[m] = np.expm1(values[m])
            m = ~pos & ~two
            base = 1 - (2 - lam[m]) * values[m]
            out[m], bad[m] = 1 - np.power(base, 1 / (2 - lam[m])), base <= 0
            m = ~pos & two
            out[m] = -np.expm1(-values[m])
        bad |= ~np.isfinite(out)
        if bad.any():
            warnings.warn(f"yeo-johnson: {int(bad.sum())} harmonized value(s) lie beyond the range the transform "
                          "can invert; set to the feature's training minimum or maximum", RuntimeWarning,
                          stacklevel=3)
            out = np.where(bad & pos, np.broadcast_to(self.high, out.shape), out)
            out = np.where(bad & ~pos, np.broadcast_to(self.low, out.shape), out)
        return out

    def to_dict(self):
        return {"name": self.name, "lambdas": self.lambdas.tolist(), "low": self.low.tolist(),
                "high": self.high.tolist()}

    @classmethod
    def from_dict(cls, data):
        """Rebuild the fitted transform from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned: ``name`` and the fitted ``lambdas``, ``low`` and ``high``.

        Returns
        -------
        YeoJohnson
            The fitted transform.
        """
        return cls(data["lambdas"], data["low"], data["high"])


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation through (xp, fp), extended linearly beyond both ends."""
    out = np.interp(x, xp, fp)
    lo, hi = x < xp[0], x > xp[-1]
    out[lo] = fp[0] + (x[lo] - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    out[hi] = fp[-1] + (x[hi] - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return out


class QuantileNormal(Identity):
    """Normal scores of the empirical distribution function learned in fit.

    Parameters
    ----------
    quantiles : sequence of array-like, optional
        Per feature, its distinct fitted quantiles, increasing; None before :meth:`fit`.
    scores : sequence of array-like, optional
        Per feature, the normal score of each quantile.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).exponential(size=(500, 1))
    >>> t = QuantileNormal().fit(x, ["f"])
    >>> z = t.forward(x, ["f"])
    >>> abs(float(np.median(z))) < 0.01, bool(np.allclose(t.inverse(z), x))
    (True, True)
    """

    name = "quantile-normal"

    def __init__(self, quantiles=None, scores=None):
        self.quantiles = None if quantiles is None else [np.asarray(q, dtype=float) for q in quantiles]
        self.scores = None if scores is None else [np.asarray(s, dtype=float) for s in scores]

    def fit(self, values, features, samples=None):
        m = min(N_QUANTILES, values.shape[0])
        probs = (np.arange(1, m + 1) - 0.5) / m
        grid = np.quantile(values, probs, axis=0)
        normal = special.ndtri(probs)
        self.quantiles, self.scores = [], []
        for j in range(values.shape[1]):
            # tied quantiles (discrete features) collapse to one point with their mean score
            q, group = np.unique(grid[:, j], return_inverse=True)
            if len(q) < 2:
                raise TransformError(f"feature_transform='quantile-normal': feature {features[j]!r} has a single distinct "
                                     f"quantile ({q[0]!r}); it is too discrete to map to normal scores")
            self.quantiles.append(q)
            self.scores.append(np.bincount(group, weights=normal) / np.bincount(group))
        return self

    def forward(self, values, features=None, samples=None):
        return np.column_stack([_interp(values[:, j], q, s)
                                for j, (q, s) in enumerate(zip(self.quantiles, self.scores))])

    def inverse(self, values):
        return np.column_stack([_interp(values[:, j], s, q)
                                for j, (q, s) in enumerate(zip(self.quantiles, self.scores))])

    def to_dict(self):
        return {"name": self.name, "quantiles": [q.tolist() for q in self.quantiles],
                "scores": [s.tolist() for s in self.scores]}

    @classmethod
    def from_dict(cls, data):
        """Rebuild the fitted transform from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned: ``name`` and the fitted ``quantiles`` and ``scores``.

        Returns
        -------
        QuantileNormal
            The fitted transform.
        """
        return cls(data["quantiles"], data["scores"])


class Auto(Identity):
    """Per feature, no transform, ``"log"`` or ``"yeo-johnson"``, chosen from the training skewness.

    Parameters
    ----------
    choices : sequence of {None, "log", "yeo-johnson"}, optional
        The transform of each feature; None before :meth:`fit`.
    skewness : array-like of shape (n_features,), optional
        Each feature's training skewness (adjusted Fisher-Pearson).
    yeo_johnson : YeoJohnson, optional
        The fitted Yeo-Johnson transform of the ``"yeo-johnson"`` features, in their order.
    threshold : float, default SKEWNESS_THRESHOLD
        The absolute skewness above which a feature is transformed.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.column_stack([rng.normal(size=300), rng.lognormal(size=300), rng.lognormal(size=300) - 1.5])
    >>> t = Auto().fit(x, ["normal", "positive", "signed"])
    >>> t.choices
    [None, 'log', 'yeo-johnson']
    >>> bool(np.allclose(t.inverse(t.forward(x, ["normal", "positive", "signed"])), x))
    True
    """

    name = "auto"

    def __init__(self, choices=None, skewness=None, yeo_johnson=None, threshold=SKEWNESS_THRESHOLD):
        self.choices = None if choices is None else list(choices)
        self.skewness = None if skewness is None else np.asarray(skewness, dtype=float)
        self.yeo_johnson = yeo_johnson
        self.threshold = float(threshold)

    def _columns(self, which):
        return np.array([c == which for c in self.choices], dtype=bool)

    def fit(self, values, features, samples=None):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a constant column has no skewness: NaN, left as is
            self.skewness = np.atleast_1d(stats.skew(values, axis=0, bias=False)) if len(values) > 2 \
                else np.zeros(values.shape[1])
        skewed = np.abs(np.nan_to_num(self.skewness)) > self.threshold
        positive = (values > 0).all(axis=0)
        self.choices = [None if not s else "log" if p else "yeo-johnson" for s, p in zip(skewed, positive)]
        yj = self._columns("yeo-johnson")
        self.yeo_johnson = YeoJohnson().fit(values[:, yj], [f for f, c in zip(features, yj) if c], samples)
        return self

    def forward(self, values, features=None, samples=None):
        out = values.astype(float, copy=True)
        log, yj = self._columns("log"), self._columns("yeo-johnson")
        if log.any():
            names = [f"column {j}" for j in range(values.shape[1])] if features is None else list(features)
            out[:, log] = Log().forward(values[:, log], [n for n, c in zip(names, log) if c], samples)
        if yj.any():
            out[:, yj] = self.yeo_johnson.forward(values[:, yj])
        return out

    def inverse(self, values):
        out = values.copy()
        log, yj = self._columns("log"), self._columns("yeo-johnson")
        out[:, log] = np.exp(values[:, log])
        if yj.any():
            out[:, yj] = self.yeo_johnson.inverse(values[:, yj])
        return out

    def to_dict(self):
        return {"name": self.name, "threshold": self.threshold, "choices": self.choices,
                "skewness": [None if not np.isfinite(v) else float(v) for v in self.skewness],
                "yeo_johnson": self.yeo_johnson.to_dict()}

    @classmethod
    def from_dict(cls, data):
        """Rebuild the fitted transform from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned: ``name``, ``threshold``, the per-feature ``choices`` and
            ``skewness``, and the fitted ``yeo_johnson`` transform.

        Returns
        -------
        Auto
            The fitted transform.
        """
        skewness = [np.nan if v is None else v for v in data["skewness"]]
        return cls(data["choices"], skewness, YeoJohnson.from_dict(data["yeo_johnson"]), data["threshold"])


_CLASSES = {cls.name: cls for cls in (Identity, Log, YeoJohnson, QuantileNormal, Auto)}


def make_transform(name: str | None) -> Identity:
    """A new, unfitted transform by name (``None`` for none).

    Parameters
    ----------
    name : {None, "log", "yeo-johnson", "quantile-normal", "auto"}
        The ``feature_transform`` of :class:`~harmony.harmonize.combat.ComBat`.

    Returns
    -------
    Identity
        :class:`Identity`, :class:`Log`, :class:`YeoJohnson`, :class:`QuantileNormal` or :class:`Auto`, to be
        fitted.

    Raises
    ------
    TransformError
        When ``name`` is not one of these.

    Examples
    --------
    >>> type(make_transform("yeo-johnson")).__name__, make_transform(None).name
    ('YeoJohnson', None)
    """
    if name not in _CLASSES:
        raise TransformError(f"transform must be None or one of {list(TRANSFORMS)}, got {name!r}")
    return _CLASSES[name]()


def transform_from_dict(data: dict) -> Identity:
    """Rebuild a fitted transform from :meth:`Identity.to_dict` output.

    Parameters
    ----------
    data : dict
        What the transform's ``to_dict`` returned; its ``name`` picks the class.

    Returns
    -------
    Identity
        The fitted transform.

    Examples
    --------
    >>> import numpy as np
    >>> fitted = make_transform("log").fit(np.array([[1.0], [2.0]]), ["f"])
    >>> type(transform_from_dict(fitted.to_dict())).__name__
    'Log'
    """
    return _CLASSES[data["name"]].from_dict(data)
