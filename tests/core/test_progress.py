"""The progress bar shows by default only when stdout and stderr are both terminals, and obeys an explicit choice."""

from __future__ import annotations

import io
import sys

import pytest

from harmony.core.progress import progress_bar


class Stream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize(("stdout", "stderr"), [(True, True), (True, False), (False, True), (False, False)])
def test_by_default_the_bar_shows_only_when_both_streams_are_terminals(monkeypatch, stdout, stderr):
    monkeypatch.setattr(sys, "stdout", Stream(stdout))
    monkeypatch.setattr(sys, "stderr", Stream(stderr))
    bar = progress_bar(range(3), desc="work")
    shown = stdout and stderr
    assert bar.disable is not shown
    assert list(bar) == [0, 1, 2]
    bar.close()
    # the bar goes to stderr, and only when shown
    assert ("3/3" in sys.stderr.getvalue()) is shown
    assert sys.stdout.getvalue() == ""


@pytest.mark.parametrize("terminals", [True, False])
def test_an_explicit_choice_wins_over_the_terminals(monkeypatch, terminals):
    monkeypatch.setattr(sys, "stdout", Stream(terminals))
    monkeypatch.setattr(sys, "stderr", Stream(terminals))
    stderr = io.StringIO()
    bar = progress_bar(range(3), progress=True, file=stderr, desc="work")
    assert not bar.disable
    assert list(bar) == [0, 1, 2]
    assert "work" in stderr.getvalue() and "3/3" in stderr.getvalue()
    quiet = progress_bar(range(3), progress=False)
    assert quiet.disable and list(quiet) == [0, 1, 2]
    assert sys.stderr.getvalue() == ""
