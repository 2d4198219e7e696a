"""The neuroCombat oracle: the reference implementation the ComBat tests and benchmark compare with.

Independent of harmony: the inputs are converted here with plain numpy and pandas, so that a bug in
harmony's input handling cannot hide in both sides of a comparison.
"""

from __future__ import annotations

from contextlib import redirect_stdout
from io import StringIO
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["neurocombat"]


def neurocombat(X: Any, batch: Any, covariates: pd.DataFrame | None = None, *, parametric: bool = True,
                eb: bool = True, mean_only: bool = False, ref_batch: str | None = None) -> np.ndarray:
    """Run neuroCombat 0.2.12 on samples x features input; samples x features out.

    Numeric covariate columns are continuous; text, category and bool ones categorical (harmony's typing rule). ``ref_batch``
    raises AttributeError on numpy 2 (neuroCombat calls ``np.int``): patch ``np.int`` to run it.
    """
    from neuroCombat import neuroCombat as _neurocombat  # a test dependency only

    values = np.asarray(X, dtype=float)
    covars = pd.DataFrame({"__batch__": np.asarray(batch).astype(str)})
    categorical, continuous = [], []
    for name, column in ({} if covariates is None else covariates.items()):
        covars[name] = column.to_numpy()
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        (continuous if numeric else categorical).append(name)
    with redirect_stdout(StringIO()):
        out = _neurocombat(values.T.copy(), covars, "__batch__", categorical_cols=categorical,
                           continuous_cols=continuous, eb=eb, parametric=parametric, mean_only=mean_only,
                           ref_batch=ref_batch)
    return np.asarray(out["data"]).T
