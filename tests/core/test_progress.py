"""The progress bar is quiet off a terminal and obeys an explicit choice."""

from __future__ import annotations

import io
import sys

from harmony.core.progress import progress_bar


def test_quiet_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert progress_bar(range(3)).disable


def test_explicit_choice_wins(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    stderr = io.StringIO()
    bar = progress_bar(range(3), progress=True, file=stderr, desc="work")
    assert not bar.disable
    assert list(bar) == [0, 1, 2]
    assert "work" in stderr.getvalue() and "3/3" in stderr.getvalue()
    assert progress_bar(range(3), progress=False).disable
