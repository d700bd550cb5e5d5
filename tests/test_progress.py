"""Progress output when stdout is not a terminal: plain lines, throttled, with rate and ETA."""

from __future__ import annotations

import io

from rich.console import Console

from campro_bench.progress import LineProgress, stage_progress


def test_log_lines_are_throttled_and_carry_rate_and_eta() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    now = [0.0]
    lines = LineProgress(console, "embed lfw", 100, interval_s=30.0, clock=lambda: now[0])
    lines.begin()
    for _ in range(100):
        now[0] += 1.0  # one item per second: a line every 30 items
        lines.advance(1)
    lines.end()
    out = buffer.getvalue().splitlines()
    assert out[0] == "embed lfw: started (100 items)"
    assert out[1] == "embed lfw: 30/100 (30 %), 1.0/s, elapsed 30 s, ETA 1 min 10 s"
    assert len(out) == 1 + 3 + 1  # start, at 30/60/90 s, end
    assert out[-1] == "embed lfw: done, 100/100 (100 %), 1.0/s, elapsed 1 min 40 s"


def test_stage_progress_writes_lines_when_not_a_terminal_and_nothing_when_quiet() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False)
    with stage_progress(console, "protect", 3) as advance:
        advance(3)
    text = buffer.getvalue()
    assert "protect: started (3 items)" in text and "protect: done, 3/3 (100 %)" in text
    quiet = io.StringIO()
    with stage_progress(Console(file=quiet, force_terminal=False), "protect", 3, quiet=True) as advance:
        advance(3)
    assert quiet.getvalue() == ""


def test_a_stage_ended_by_an_interrupt_says_stopped_not_done() -> None:
    buffer = io.StringIO()
    try:
        with stage_progress(Console(file=buffer, force_terminal=False, width=200), "embed lfw", 20) as advance:
            advance(2)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    last = buffer.getvalue().splitlines()[-1]
    assert last.startswith("embed lfw: stopped, 2/20 (10 %)") and "done" not in buffer.getvalue()
