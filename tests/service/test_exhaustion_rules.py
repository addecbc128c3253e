"""The rules behind clean failures under exhaustion, without a service: which staged uploads a
starting API deletes (only those no live process holds locked), and how a training child's
death is classified (an OOM kill seen in the worker's cgroup is ``out_of_memory``, a SIGKILL the
supervisor sent is not, nor is one with no sign of memory)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time

from hm2bp_service.memory import out_of_memory_message
from hm2bp_service.uploads import SWEEP_MIN_AGE_SECONDS, staging_file, sweep_staging
from worker.supervisor import oom_outcome

MIB = 1 << 20


def test_the_sweep_deletes_only_staged_files_no_process_holds(tmp_path):
    held, fd = staging_file(tmp_path)  # an upload in progress, in this process
    other = tmp_path / "upload-other.part"
    other.write_bytes(b"x")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(other)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        left = tmp_path / "upload-left.part"  # an API process that died: nothing holds it
        left.write_bytes(b"y")
        young = tmp_path / "upload-young.part"
        old = time.time() - 2 * SWEEP_MIN_AGE_SECONDS
        for path in (held, other, left):
            os.utime(path, (old, old))
        young.write_bytes(b"z")  # just made: it may be between its creation and its lock
        assert sweep_staging(tmp_path) == ["upload-left.part"]
        assert held.exists() and other.exists() and young.exists() and not left.exists()
        holder.kill()
        holder.wait()
        os.utime(other, (old, old))
        assert sweep_staging(tmp_path) == ["upload-other.part"]  # its holder is gone
    finally:
        holder.kill()
        holder.wait()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def test_an_oom_kill_seen_in_the_cgroup_is_out_of_memory():
    found = oom_outcome(-signal.SIGKILL, 300 * MIB, 4096 * MIB, killed_here=False, oom_killed=True)
    assert found is not None and found["reason"] == "out_of_memory" and found["status"] == "failed"
    assert found["message"].startswith("ran out of memory (limit ") and "the kernel killed it at 300 MiB" in \
        found["message"]


def test_other_deaths_are_not_out_of_memory():
    limit = 1000 * MIB
    assert oom_outcome(-signal.SIGKILL, 900 * MIB, limit, killed_here=True, oom_killed=True) is None  # its own kill
    assert oom_outcome(-signal.SIGKILL, 100 * MIB, limit, killed_here=False) is None  # no sign of memory
    assert oom_outcome(-signal.SIGSEGV, 990 * MIB, limit, killed_here=False, oom_killed=True) is None
    near = oom_outcome(-signal.SIGKILL, 900 * MIB, limit, killed_here=False)  # no cgroup: the peak tells
    assert near is not None and near["message"] == out_of_memory_message(limit, "the kernel killed it at 900 MiB")
    assert out_of_memory_message(700 * MIB) == ("ran out of memory (limit 700 MiB): reduce training.batch_size or "
                                                "encoding.time_steps (or the network's size)")
