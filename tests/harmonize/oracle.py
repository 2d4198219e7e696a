"""The neuroCombat oracle: the reference implementation the ComBat tests and benchmark compare with.
"""

from __future__ import annotations

from contextlib import redirect_stdout
from io import StringIO
from typing import Any

import numpy as np
import pandas as pd

from harmony.harmonize.covariates import fit_covariates
from harmony.harmonize.inputs import _as_batch, _as_matrix

# -- the neuroCombat adapter (the one place its features x samples layout is converted) ---------------

def neurocombat(X: Any, batch: Any, covariates: pd.DataFrame | None = None, *, parametric: bool = True,
                eb: bool = True, mean_only: bool = False, ref_batch: str | None = None) -> np.ndarray:
    """Run neuroCombat 0.2.12 on samples x features input, with ComBat's covariate typing; samples x features out.

    The reference implementation for tests and benchmarks. ``ref_batch`` raises AttributeError on numpy 2
    (neuroCombat calls ``np.int``).
    """
    from neuroCombat import neuroCombat as _neurocombat

    values, _, samples = _as_matrix(X)
    labels = _as_batch(batch, values.shape[0], samples)
    covars = pd.DataFrame({"__batch__": labels})
    categorical, continuous = [], []
    for spec in fit_covariates(covariates):
        column = covariates[spec.name].to_numpy()
        covars[spec.name] = column
        (continuous if spec.levels is None else categorical).append(spec.name)
    with redirect_stdout(StringIO()):
        out = _neurocombat(values.T.copy(), covars, "__batch__", categorical_cols=categorical,
                           continuous_cols=continuous, eb=eb, parametric=parametric, mean_only=mean_only,
                           ref_batch=ref_batch)
    return np.asarray(out["data"]).T
