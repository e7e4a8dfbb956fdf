"""A replay's progress: a bar with rate and ETA on a terminal, log lines with both otherwise."""

import io
import logging

import pytest

from consumers.replay.progress import BarProgress, LogProgress, progress_for, rate_and_eta


class Terminal(io.StringIO):
    """Output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_log_lines_with_rate_and_eta(
    caplog: pytest.LogCaptureFixture,
) -> None:
    progress = progress_for("profiles", interval=0.0, stream=io.StringIO())
    assert isinstance(progress, LogProgress)
    with caplog.at_level(logging.INFO, logger="consumers.replay"):
        progress.start(1_000, 0)
        progress.advance(250, None)
        progress.advance(250, 2_000)
        progress.finish("swapped in")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "replay profiles: building, starting at 0 of 1,000"
    assert lines[1].startswith("replay profiles: 250/1,000 (25 %) at ")
    assert "/s, ETA " in lines[1]
    assert lines[2].startswith("replay profiles: 500/2,000 (25 %)")  # the total grew
    assert lines[-1] == "replay profiles: swapped in"


def test_log_lines_come_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    progress = LogProgress("audit", interval=3600)
    with caplog.at_level(logging.INFO, logger="consumers.replay"):
        progress.start(None, 10)
        for _ in range(100):
            progress.advance(1, None)
    assert [r.getMessage() for r in caplog.records] == ["replay audit: building, starting at 10"]


def test_on_a_terminal_progress_is_a_bar_with_rate_and_eta() -> None:
    terminal = Terminal()
    progress = progress_for("profiles", stream=terminal)
    assert isinstance(progress, BarProgress)
    progress.start(1_000, 100)
    progress.advance(400, 1_000)
    progress.finish("swapped in")
    shown = terminal.getvalue()
    assert "replay profiles" in shown
    assert "500/1000" in shown
    assert "/s" in shown
    assert "ETA" in shown
    assert "swapped in" in shown


def test_rate_and_eta_read_as_a_person_would_say_them() -> None:
    assert rate_and_eta(600, 100, 1_100, 10.0) == "600/1,100 (55 %) at 50/s, ETA 10 s"
    assert rate_and_eta(600, 100, None, 10.0) == "600 done at 50/s"
    assert rate_and_eta(100, 100, 1_000, 0.0).endswith("ETA unknown")
