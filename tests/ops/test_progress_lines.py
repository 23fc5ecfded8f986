"""ops.lake.progress: what a [progress] line says, the bar in a terminal, the progress file."""
from __future__ import annotations

import io
import time

from ops.lake import progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_carry_counts_rate_eta_and_facts():
    buf = io.StringIO()
    p = progress.Progress("pretrain", unit="steps", total=200, stream=buf, every=0)
    assert p.line().startswith("[progress] pretrain: working; ")
    p.update(done=0)
    p._first = (p._first[0] - 10.0, 0)  # as if the first update were 10 s ago
    p.update(done=50, loss=2.5, tokens_per_s=12345.6)
    line = p.emit()
    assert buf.getvalue() == line + "\n"
    assert "50/200 steps (25%)" in line and "ETA 30 s" in line and "loss 2.5000" in line
    assert "tokens per s 12,346" in line


def test_progress_file_holds_the_newest_line(tmp_path, monkeypatch):
    target = tmp_path / "progress.txt"
    monkeypatch.setenv(progress.FILE_ENV, str(target))
    p = progress.Progress("dedup", stream=io.StringIO(), every=0, extra=lambda: "stage 2 (x): 1/4 tasks")
    p.emit()
    assert target.read_text().startswith("[progress] dedup: stage 2 (x): 1/4 tasks; ")


def test_a_terminal_gets_a_bar_instead_of_lines():
    screen = FakeTerminal()
    p = progress.Progress("crawl", unit="pages", total=20, stream=screen, every=0.2).start()
    for i in range(21):
        p.update(i, loss=1.5)
        time.sleep(0.05)
    time.sleep(1.2)
    p.stop()
    out = screen.getvalue()
    assert progress.PREFIX not in out  # no plain lines on a terminal
    assert "crawl:" in out and "20/20" in out and "loss 1.5000" in out and "\r" in out
