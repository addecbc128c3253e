"""The CPU priority of training runs on a machine they share with the API (``hm2bp serve``)."""

from __future__ import annotations

import os


def carry_niceness_to_session() -> None:
    """Give this process's new session the process's nice value.

    Linux with autogroup (``/proc/sys/kernel/sched_autogroup_enabled``, on by default in most
    distributions) puts each new session (``setsid``, ``start_new_session=True``) in a scheduling
    group of its own and shares the CPU between groups by the group's nice value alone; a
    process's own nice value then only ranks it within its group. So a niced training run that
    started a session would take as much CPU as the API (benchmarks/load.py measured 0.63 cores
    for a nice +10 run against 0.85 for two API processes). Called first thing in a process that
    is its session's leader; a no-op where there is no autogroup."""
    try:
        with open("/proc/self/autogroup", "w") as handle:
            handle.write(str(os.getpriority(os.PRIO_PROCESS, 0)))
    except OSError:
        pass
