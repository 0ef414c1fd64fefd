"""The peak-RSS helper measures the child alone, however big the test process that starts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.peakrss import Measured

MIB = 1024


def test_the_child_is_measured_alone_not_the_big_process_that_started_it(tmp_path: Path):
    ballast = b"\x01" * (300 * 1024 * 1024)  # this process grows by 300 MiB, every page touched
    argv = [sys.executable, "-c", "pass"]
    # What the hostile tests measured before: wait4 on a child forked from this process.
    direct = subprocess.Popen(argv)
    _, _, usage = os.wait4(direct.pid, 0)
    direct.returncode = 0
    assert usage.ru_maxrss > 300 * MIB, "the kernel no longer carries the parent's peak: helper not needed"
    run = Measured(argv, tmp_path / "rss")
    assert run.wait(60) == 0
    assert run.peak_kib() < 100 * MIB
    del ballast


def test_a_big_child_is_measured_big_and_its_exit_code_passes_through(tmp_path: Path):
    run = Measured([sys.executable, "-c", "import sys; b = b'x' * (200 << 20); sys.exit(3)"], tmp_path / "rss")
    assert run.wait(60) == 3
    assert run.peak_kib() > 200 * MIB


def test_a_killed_child_is_reported_as_a_signal(tmp_path: Path):
    run = Measured([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"], tmp_path / "rss")
    assert run.wait(60) == 128 + 9
