"""Warnings in the user's words: caught, deduplicated, counted, nested collectors hand theirs outwards."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from harmony.cli import main
from harmony.core.notices import HarmonyWarning, WarningLog, collect_warnings, warn


def test_each_warning_is_reported_once_with_its_count_and_what_it_is_about():
    with collect_warnings() as log:
        for _ in range(6):
            warn("values clipped to the training range", feature="original_firstorder_Mean", site="A")
        warn("values clipped to the training range", feature="original_firstorder_Mean", site="B")
        warn("only 2 subjects", case="c1")
    assert log.lines() == ["feature 'original_firstorder_Mean', site 'A': values clipped to the training range "
                           "(6 times)",
                           "feature 'original_firstorder_Mean', site 'B': values clipped to the training range",
                           "case 'c1': only 2 subjects"]
    first = log.records()[0]
    assert (first["feature"], first["site"], first["case"], first["count"]) == ("original_firstorder_Mean", "A",
                                                                                   None, 6)


def test_numerical_and_library_warnings_are_caught_in_plain_words_not_printed(capsys):
    with collect_warnings() as log:
        for _ in range(3):
            np.multiply(np.array([1e300]), np.array([1e300]))
        warnings.warn("Attempting to set identical low and high xlims", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == ""
    overflow, xlims = log.notices
    assert overflow.count == 3
    assert overflow.why == ("numerical problem in test_notices: overflow encountered in multiply (the values "
                            "affected are NaN or infinite)")
    assert xlims.why == "library note from test_notices: Attempting to set identical low and high xlims"


def test_nested_collectors_hand_their_notices_outwards():
    with collect_warnings() as outer:
        with collect_warnings() as inner:
            warn("inner", site="A")
        warn("inner", site="A")
    assert inner.lines() == ["site 'A': inner"]
    assert outer.lines() == ["site 'A': inner (2 times)"]


def test_outside_a_collector_a_harmony_warning_is_an_ordinary_warning():
    with pytest.warns(HarmonyWarning, match="feature 'f': why"):
        warn("why", feature="f")
    log = WarningLog()
    log.add("text without a category")
    assert log.lines() == ["text without a category"]  # harmony's own words


def test_the_cli_prints_each_warning_once_after_the_command(tmp_path, capsys, monkeypatch):
    import harmony.cli as cli

    def noisy(args):
        for _ in range(4):
            warn("few cases", site="A")
        np.log(np.zeros(1))
        return 0

    monkeypatch.setattr(cli, "_versions", noisy)
    monkeypatch.setattr(cli, "COMMANDS", [(n, h, a, noisy if n == "versions" else r) for n, h, a, r in cli.COMMANDS])
    assert main(["versions"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "harmony versions: warning: site 'A': few cases (4 times)"
    assert err[1].startswith("harmony versions: warning: numerical problem in test_notices: divide by zero")
    assert len(err) == 2
