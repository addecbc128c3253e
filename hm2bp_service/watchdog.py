"""A process's watchdog of its parent: when the parent dies, however it dies (``kill -9`` runs no
cleanup of its own), the process gets a signal and goes too, so nothing that ``hm2bp serve`` or a
worker started runs on as an orphan.

On Linux this is the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG)``), set in the child
(``preexec_fn`` of ``subprocess.Popen``, or first thing in its ``main``); elsewhere a daemon thread
polls the parent's pid. Either way a parent that died before the watch began is noticed at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; False where it cannot.
    Safe in a ``preexec_fn`` (no threads, no allocation beyond ctypes' call)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum) == 0


def child_of(parent_pid: int, signum: int) -> None:
    """For a ``preexec_fn``: die with the parent whose pid is ``parent_pid`` (the process that calls
    ``Popen``; read it with ``os.getpid()`` there, before the fork)."""
    set_parent_death_signal(signum)
    if os.getppid() != parent_pid:  # the parent died between the fork and the line above
        os.kill(os.getpid(), signum)


def watch_parent(signum: int = signal.SIGKILL, parent_pid: int | None = None) -> None:
    """In a running process: get ``signum`` when the parent (``parent_pid``, default: the current
    one) is gone."""
    parent = parent_pid if parent_pid is not None else os.getppid()
    if not set_parent_death_signal(signum):
        def poll() -> None:
            while os.getppid() == parent:
                time.sleep(POLL_SECONDS)
            os.kill(os.getpid(), signum)

        threading.Thread(target=poll, name="parent-watchdog", daemon=True).start()
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)
