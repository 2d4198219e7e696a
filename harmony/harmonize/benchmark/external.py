"""Peers that run in an environment of their own: neuroHarmonize, through a job script in a subprocess.

neuroHarmonize 2.5.2 pins numpy < 2 and pandas < 3, so it cannot be imported next to harmony. The user points
harmony at a Python that has it (``--neuroharmonize-python``, default ``$HARMONY_NEUROHARMONIZE_PYTHON``);
harmony runs the job script it ships (``jobs/neuroharmonize.py``, never imported) with that Python, one
subprocess per fit, exchanging ``.npy`` arrays (loaded with ``allow_pickle=False``) and JSON in a temporary
folder. Such an environment is made with::

    python3.11 -m venv .venv-nh
    .venv-nh/bin/pip install neuroHarmonize==2.5.2 'numpy<2' 'pandas<3' statsmodels
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from harmony.core.errors import HarmonyError

__all__ = ["NEUROHARMONIZE_PYTHON_ENV", "RECIPE", "check_neuroharmonize", "configured_neuroharmonize",
           "run_neuroharmonize"]

#: The environment variable naming the Python that has neuroHarmonize.
NEUROHARMONIZE_PYTHON_ENV = "HARMONY_NEUROHARMONIZE_PYTHON"
#: How to make such an environment.
RECIPE = ("python3.11 -m venv .venv-nh && .venv-nh/bin/pip install neuroHarmonize==2.5.2 'numpy<2' 'pandas<3' "
          "statsmodels")
#: The seed neuroHarmonize is given: its GAM draws the cross-validation folds of its penalty choice from it.
SEED = 0
_CHECK_SECONDS, _JOB_SECONDS = 120, 900


def configured_neuroharmonize(python: str | os.PathLike | None = None) -> str | None:
    """The Python that has neuroHarmonize: ``python`` when given, else ``$HARMONY_NEUROHARMONIZE_PYTHON``.

    Parameters
    ----------
    python : str or path-like, optional

    Returns
    -------
    str or None
        None when neither is set (neuroHarmonize is not configured).

    Examples
    --------
    >>> configured_neuroharmonize("/opt/nh/bin/python")
    '/opt/nh/bin/python'
    """
    chosen = os.fspath(python) if python is not None else os.environ.get(NEUROHARMONIZE_PYTHON_ENV, "")
    return chosen.strip() or None


def _job(python: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    with resources.as_file(resources.files(__package__).joinpath("jobs", "neuroharmonize.py")) as script:
        # -I: isolated from harmony's PYTHONPATH and user site; one BLAS thread per job, as harmony's workers
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return subprocess.run([python, "-I", str(script), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def check_neuroharmonize(python: str) -> dict[str, str]:
    """Check that ``python`` runs and imports neuroHarmonize; return the versions of its environment.

    Parameters
    ----------
    python : str
        Path of a Python executable.

    Returns
    -------
    dict of str to str
        ``python``, ``neuroHarmonize``, ``neuroCombat``, ``numpy``, ``pandas``, ``statsmodels``, ``scipy``.

    Raises
    ------
    HarmonyError
        One line naming the path and what is wrong (absent, not runnable, neuroHarmonize not importable).
    """
    where = f"neuroHarmonize Python {python!r} (--neuroharmonize-python or ${NEUROHARMONIZE_PYTHON_ENV})"
    if not Path(python).is_file():
        raise HarmonyError(f"{where}: no such file; make an environment with: {RECIPE}")
    try:
        done = _job(python, "--versions", timeout=_CHECK_SECONDS)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HarmonyError(f"{where}: cannot run it ({exc})") from None
    if done.returncode != 0:
        raise HarmonyError(f"{where}: neuroHarmonize is not importable there ({_last_line(done.stderr)}); make an "
                           f"environment with: {RECIPE}")
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise HarmonyError(f"{where}: unexpected answer {_last_line(done.stdout)!r}") from None
    return {str(k): str(v) for k, v in found.items()}


def run_neuroharmonize(python: str, train: tuple[np.ndarray, np.ndarray, np.ndarray],
                       test: tuple[np.ndarray, np.ndarray, np.ndarray], covariates: list[str],
                       smooth: list[str]) -> tuple[np.ndarray, np.ndarray, list[list[float]]]:
    """harmonizationLearn on ``train``, harmonizationApply on ``test``, in ``python``'s environment.

    Parameters
    ----------
    python : str
        A Python that has neuroHarmonize (:func:`check_neuroharmonize`).
    train, test : (ndarray, ndarray, ndarray)
        Features (subjects x features), site labels, and numeric covariates (subjects x covariates).
    covariates : list of str
        The covariates' names (columns of the covariate arrays).
    smooth : list of str
        The covariates modelled as smooth terms (its GAM; empty: linear ComBat).

    Returns
    -------
    (ndarray, ndarray, list of list of float)
        The harmonized training and held-back features, and the spline penalty neuroHarmonize chose per
        feature (one per smooth term; empty without smooth terms).

    Raises
    ------
    RuntimeError
        neuroHarmonize failed on these data, or the job did not finish (the reason is the message).
    """
    with tempfile.TemporaryDirectory(prefix="harmony-nh-") as tmp:
        folder = Path(tmp)
        for split, (X, site, covs) in (("train", train), ("test", test)):
            np.save(folder / f"{split}_X.npy", np.asarray(X, dtype=float))
            np.save(folder / f"{split}_site.npy", np.asarray(site).astype(str))
            np.save(folder / f"{split}_covariates.npy", np.asarray(covs, dtype=float).reshape(len(X), -1))
        (folder / "job.json").write_text(json.dumps({"covariates": covariates, "smooth": smooth, "seed": SEED}))
        try:
            done = _job(python, str(folder), timeout=_JOB_SECONDS)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"neuroHarmonize did not finish in {_JOB_SECONDS} s") from None
        if not (folder / "result.json").exists():
            raise RuntimeError(f"neuroHarmonize's job failed ({_last_line(done.stderr)})")
        result = json.loads((folder / "result.json").read_text())
        if "error" in result:
            raise RuntimeError(result["error"])
        return (np.load(folder / "train_out.npy", allow_pickle=False),
                np.load(folder / "test_out.npy", allow_pickle=False), result["alpha"])
