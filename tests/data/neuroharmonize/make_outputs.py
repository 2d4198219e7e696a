"""Produce neuroHarmonize 2.5.2's ComBat-GAM outputs on a small simulated cohort, for tests/harmonize/test_gam.py.

neuroHarmonize pins numpy < 2, so this runs in its own environment, once; its outputs are stored next to it:

    make neuroharmonize          # builds .venv-nh: neuroHarmonize==2.5.2, numpy<2, pandas<3, statsmodels
    .venv-nh/bin/python tests/data/neuroharmonize/make_outputs.py

Versions used for the stored files: neuroHarmonize 2.5.2, neuroCombat 0.2.12, numpy 1.26.4, pandas 2.3.3,
statsmodels 0.15.0, scipy 1.17.1, Python 3.11.

neuroHarmonize chooses the spline penalty of each feature by a randomly shuffled 5-fold cross-validation
(statsmodels' ``select_penweight_kfold``); the penalties it chose are recorded (by wrapping that method, which
is otherwise called unchanged) so that the test can fit harmony's GAM with the same penalties. neuroHarmonize
passes its ``seed=`` to those folds only when the method's signature has statsmodels 0.15's ``rng``; the stored
files were made by a wrapper without ``functools.wraps``, which hid that parameter, so their folds came from fresh
entropy and a rerun chooses other, equally valid, penalties and outputs (each run's files are consistent with
each other, which is what the test needs). The wrapper now keeps the signature, so reruns repeat each other.

Files (all CSV, 17 significant digits):
- ``train.csv``: SITE, age, sex (0/1) and features f0..f5 of 150 training subjects (3 sites);
- ``test.csv``: the same columns for 30 new subjects of the same sites (ages inside the training range);
- ``<case>_train.csv``: harmonizationLearn's harmonized training features; ``<case>_alpha.csv``: the penalty
  chosen per feature; ``<case>_test.csv``: harmonizationApply's harmonized new subjects. Cases: ``gam``
  (smooth age, linear sex) and ``gam_ref`` (the same with ref_batch="site2").
"""

import functools
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def simulate(rng, n):
    site = rng.choice(["site1", "site2", "site3"], n)
    age = rng.uniform(20, 85, n)
    sex = rng.integers(0, 2, n).astype(float)
    codes = np.unique(site, return_inverse=True)[1]
    n_feat = 6
    curve = np.sin((age[:, None] - 20) / 65 * np.pi * rng.uniform(0.5, 1.5, n_feat)) * rng.uniform(1, 3, n_feat)
    X = (rng.normal(10, 2, n_feat) + curve + np.outer(sex, rng.normal(0, 0.5, n_feat))
         + rng.normal(0, 1, (3, n_feat))[codes] + rng.uniform(0.5, 1.5, (3, n_feat))[codes] * rng.normal(size=(n, n_feat)))
    return pd.DataFrame({"SITE": site, "age": age, "sex": sex, **{f"f{j}": X[:, j] for j in range(n_feat)}})


def main():
    from neuroHarmonize import (  # its own environment only (numpy < 2)
        harmonizationApply,
        harmonizationLearn,
    )
    from statsmodels.gam.generalized_additive_model import GLMGam

    rng = np.random.default_rng(14)
    train = simulate(rng, 150)
    test = simulate(np.random.default_rng(15), 40)
    test = test[(test.age > train.age.min()) & (test.age < train.age.max())].head(30).reset_index(drop=True)
    features = [f"f{j}" for j in range(6)]
    train.to_csv(HERE / "train.csv", index=False, float_format="%.17g")
    test.to_csv(HERE / "test.csv", index=False, float_format="%.17g")

    chosen = []
    original = GLMGam.select_penweight_kfold

    @functools.wraps(original)
    def recording(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        chosen.append(float(np.ravel(result[0])[0]))
        return result

    GLMGam.select_penweight_kfold = recording
    for case, ref in (("gam", None), ("gam_ref", "site2")):
        chosen.clear()
        covars = train[["SITE", "age", "sex"]]
        model, harmonized = harmonizationLearn(train[features].to_numpy(), covars, smooth_terms=["age"],
                                               ref_batch=ref, seed=0)
        pd.DataFrame(harmonized, columns=features).to_csv(HERE / f"{case}_train.csv", index=False, float_format="%.17g")
        pd.DataFrame({"feature": features, "alpha": chosen}).to_csv(HERE / f"{case}_alpha.csv", index=False,
                                                                   float_format="%.17g")
        applied = harmonizationApply(test[features].to_numpy(), test[["SITE", "age", "sex"]], model)
        pd.DataFrame(applied, columns=features).to_csv(HERE / f"{case}_test.csv", index=False, float_format="%.17g")


if __name__ == "__main__":
    main()
