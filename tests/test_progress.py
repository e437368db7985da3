"""The shared progress bar: silent when disabled, counts and rates when enabled."""

from __future__ import annotations

from glaviz.util.progress import Progress


def test_disabled_bar_is_silent(capsys) -> None:
    with Progress(False, total=3, description="x", rate_unit="windows") as bar:
        bar.advance(3)
    assert capsys.readouterr() == ("", "")


def test_enabled_bar_tracks_progress_and_rate() -> None:
    with Progress(True, total=4, description="deploy", rate_unit="windows") as bar:
        bar.advance(2)
        bar.describe("deploy (row 2)")
        task = bar._bar.tasks[0]
        assert task.completed == 2 and task.description == "deploy (row 2)"
        assert task.fields["rate"].endswith("windows/s")
