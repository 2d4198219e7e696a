"""neuroHarmonize's harmonizationLearn on training subjects and harmonizationApply on held-back ones, as a job.

harmony ships this script and runs it with a Python that has neuroHarmonize (which pins numpy < 2, so it
cannot run in harmony's own environment); harmony never imports it. It imports only neuroHarmonize, numpy,
pandas and statsmodels (neuroHarmonize's own dependency), and exchanges only plain arrays:

    python neuroharmonize.py --versions   prints the versions of those packages as JSON
    python neuroharmonize.py FOLDER       runs the job in FOLDER

FOLDER holds ``job.json`` (``covariates``: the names of the columns of the covariate arrays, ``smooth``: the
ones modelled as smooth terms, ``seed``), and ``{train,test}_X.npy`` (subjects x features, float),
``{train,test}_site.npy`` (str) and ``{train,test}_covariates.npy`` (subjects x covariates, float). The job
writes ``train_out.npy``, ``test_out.npy`` and ``result.json`` (``alpha``: the spline penalty chosen per
feature and smooth term, empty without smooth terms), or ``result.json`` with ``error`` when neuroHarmonize
fails. Arrays are read with ``allow_pickle=False``.
"""

import contextlib
import functools
import io
import json
import sys
from importlib import metadata
from pathlib import Path


def versions():
    found = {"python": sys.version.split()[0]}
    for name in ("neuroHarmonize", "neuroCombat", "numpy", "pandas", "statsmodels", "scipy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    import neuroHarmonize  # noqa: F401  (importable, not only installed)
    return found


def run(folder):
    import numpy as np
    import pandas as pd
    from neuroHarmonize import harmonizationApply, harmonizationLearn
    from statsmodels.gam.generalized_additive_model import GLMGam

    job = json.loads((folder / "job.json").read_text())

    def covars(split):
        values = np.load(folder / f"{split}_covariates.npy", allow_pickle=False)
        frame = pd.DataFrame(values, columns=job["covariates"])
        frame.insert(0, "SITE", np.load(folder / f"{split}_site.npy", allow_pickle=False))
        return frame

    chosen = []
    original = GLMGam.select_penweight_kfold

    # the penalty neuroHarmonize chose, recorded; the call is unchanged. wraps keeps the signature, whose ``rng``
    # neuroHarmonize looks for to pass its seed on to the cross-validation folds (without it they are random)
    @functools.wraps(original)
    def recording(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        chosen.append([float(a) for a in np.ravel(result[0])])
        return result

    GLMGam.select_penweight_kfold = recording
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        model, train_out = harmonizationLearn(np.load(folder / "train_X.npy", allow_pickle=False), covars("train"),
                                              smooth_terms=job["smooth"], seed=job["seed"])
        test_out = harmonizationApply(np.load(folder / "test_X.npy", allow_pickle=False), covars("test"), model)
    np.save(folder / "train_out.npy", np.asarray(train_out, dtype=float))
    np.save(folder / "test_out.npy", np.asarray(test_out, dtype=float))
    return {"alpha": chosen}


def main(argv):
    if argv == ["--versions"]:
        print(json.dumps(versions()))
        return 0
    folder = Path(argv[0])
    try:
        result = run(folder)
    except Exception as exc:  # noqa: BLE001  (neuroHarmonize failing on this cohort is a result)
        result = {"error": f"{type(exc).__name__}: {exc}"}
    (folder / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
