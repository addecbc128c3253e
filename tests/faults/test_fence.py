"""The lease fence of a training run (``worker.child.arm_fence``): each ``fence D`` line from its
supervisor moves the deadline on, and a run frozen (SIGSTOP) past the last one ends the instant it
is continued, before it does one more thing: a job's next owner never sees it train."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN = """
import sys, threading, time
from worker.child import arm_fence, listen_for_control
arm_fence(float(sys.argv[1]))
listen_for_control(threading.Event())
with open(sys.argv[2], "w") as out:
    for step in range(10**9):
        out.write(f"{step}\\n")
        out.flush()
        time.sleep(0.01)
"""


def steps(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_run_frozen_past_its_fence_ends_when_continued_without_another_step(tmp_path):
    progress = tmp_path / "steps"
    run = subprocess.Popen([sys.executable, "-c", RUN, repr(time.monotonic() + 2.0), str(progress)],
                           stdin=subprocess.PIPE, text=True, cwd=REPO)
    try:
        renewed_until = time.monotonic() + 4.0  # renewals keep it running past its first fence
        while time.monotonic() < renewed_until:
            run.stdin.write(f"fence {time.monotonic() + 2.0!r}\n")
            run.stdin.flush()
            time.sleep(0.25)
            assert run.poll() is None, "the run ended although its fence was moved on"
        while steps(progress) == 0:
            time.sleep(0.05)
        run.stdin.write(f"fence {time.monotonic() + 0.5!r}\n")  # the last renewal
        run.stdin.flush()
        time.sleep(0.1)
        os.kill(run.pid, signal.SIGSTOP)  # its supervisor, and it with it, frozen
        time.sleep(1.0)  # past the fence
        frozen_at = steps(progress)
        os.kill(run.pid, signal.SIGCONT)
        assert run.wait(10) == -signal.SIGALRM
        assert steps(progress) == frozen_at, "the run took another step after it was continued past its fence"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
