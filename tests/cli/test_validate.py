"""`harmony validate`: prints the resolved config (exit 0); a bad key or value is one line naming it (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

from harmony.cli import main
from harmony.workflows.experiment import load_experiment


def test_exit_codes_and_the_resolved_config(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('[experiment]\nname = "x"\nseed = 3\n')
    assert main(["validate", str(good)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["experiment"]["seed"] == 3
    assert printed == json.loads(json.dumps(load_experiment(good), default=str))  # defaults filled in, as loaded
    bad = tmp_path / "bad.toml"
    bad.write_text('[experiment]\nname = "x"\nsede = 3\n')
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "experiment.sede" in err and "unknown key" in err and str(bad) in err and len(err.splitlines()) == 1
    assert main(["validate", str(good), "--set", "experiment.seed=-1"]) == 2
    assert "--set: experiment.seed: must be >= 0, got -1" in capsys.readouterr().err


def test_pyradiomics_settings_are_checked_too(tmp_path, capsys):
    config = tmp_path / "bad_settings.toml"
    config.write_text('[extraction.settings.setting]\nbinWidht = 5\n')
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "pyradiomics rejected the parameters" in err and "binWidht" in err and len(err.splitlines()) == 1


def test_validation_loads_only_what_it_needs():
    """Checking a config (the quickstart: a simulated cohort, a perturbation design, pyradiomics settings) needs
    the config language, the spec classes and pyradiomics; not the table, statistics or plotting stack."""
    code = ("import json, sys; from harmony.cli import main; code = main(['validate', 'quickstart']); "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "radiomics" in loaded  # the [extraction] settings were checked by pyradiomics
    assert not loaded & {"pandas", "pyarrow", "scipy", "sklearn", "matplotlib", "skimage", "neuroCombat"}
