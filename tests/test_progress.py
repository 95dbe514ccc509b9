"""The one progress-bar style (:mod:`coffea_f4f.progress`): rich with coffea's columns, tqdm
without rich, the switches, and output that is not a terminal. The bars of training and
``apply`` themselves are tested through the command line in test_cli.py."""

from __future__ import annotations

import io
import sys

import pytest

from coffea_f4f import progress


@pytest.fixture(autouse=True)
def _no_global_switch(monkeypatch):
    monkeypatch.delenv(progress.ENV_VAR, raising=False)


def _run_bar(**kwargs) -> None:
    with progress.progress_bar(40, desc="demo bar", unit="step", **kwargs) as bar:
        for _ in range(40):
            bar.update(1)
        bar.set_postfix_str("epoch 2/2 loss 1.2345")


def test_rich_bar_off_a_terminal_is_one_plain_line(capsys):
    pytest.importorskip("rich")
    _run_bar()
    captured = capsys.readouterr()
    assert captured.out == ""  # stderr only
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err  # printed once, when it closes
    line = lines[0]
    assert line.startswith("demo bar 100% ")
    assert "40/40 epoch 2/2 loss 1.2345 [0:00:00 < 0:00:00 | " in line
    assert line.endswith(" step/s]")
    assert "\x1b[" not in line  # no colour codes in logs


def test_rich_bar_on_a_terminal_fits_the_width(monkeypatch):
    """Drawn on a terminal the line is cut to the console width, never wrapped."""
    pytest.importorskip("rich")
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=60, force_terminal=True, color_system=None)
    bar = progress._line_progress()(console=console, auto_refresh=False)
    bar.add_task("a long description", total=1000, completed=500, unit="step", initial=0,
                 status="epoch 5/10 loss 2.8312 val 2.8012")  # fmt: skip
    console.print(*bar.get_renderables())
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    assert len(lines[0]) <= 60
    assert lines[0].startswith("a long description  50% ")


@pytest.mark.parametrize("switch", ["0", "false", "OFF", "no"])
def test_the_environment_switch_hides_every_bar(switch, monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV_VAR, switch)
    assert not progress.show_progress()
    _run_bar()
    assert capsys.readouterr().err == ""


def test_the_run_switch_hides_the_bar(capsys):
    assert progress.show_progress()
    assert not progress.show_progress(False)
    _run_bar(show=False)
    assert capsys.readouterr().err == ""


def test_tqdm_without_rich(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich... -> ImportError
    monkeypatch.setitem(sys.modules, "rich.console", None)
    _run_bar()
    err = capsys.readouterr().err
    assert "demo bar" in err
    assert "40/40" in err
    assert "epoch 2/2 loss 1.2345" in err
