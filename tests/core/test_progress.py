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


def test_in_a_log_a_long_stage_writes_start_periodic_and_end_lines(monkeypatch, caplog):
    import logging

    from harmony.core import progress as module

    monkeypatch.setattr(sys, "stdout", Stream(False))
    monkeypatch.setattr(sys, "stderr", Stream(False))
    clock = iter([0.0, 0.0, 40.0, 41.0, 80.0, 100.0])
    monkeypatch.setattr(module.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger=module.PROGRESS_LOGGER):
        with progress_bar(total=4, desc="extract", unit="task") as bar:
            assert bar.disable
            for _ in range(4):
                bar.update()
    lines = [r.getMessage() for r in caplog.records]
    # updates at 0, 40, 41 and 80 s: a line when 30 s passed since the last (40 s: 2 done at 0.05 task/s, 2
    # left -> ETA 40 s; 41 s: skipped; 80 s), and the closing line at 100 s
    assert lines == ["extract: started, 0 of 4 tasks", "extract: 2 of 4 tasks (50%), 0.05 task/s, ETA 40s",
                     "extract: 4 of 4 tasks (100%), 0.05 task/s, ETA 0s", "extract: 4 of 4 tasks done in 1m40s"]
    assert sys.stderr.getvalue() == ""  # lines go to the logger; the CLI decides where they are shown
