"""The memory a training child may use, and how running out of it is told to the user.

- ``cgroup_limit``: the memory limit of the control group this process is in (cgroup v2
  ``memory.max``, v1 ``memory.limit_in_bytes``; the lowest of it and its ancestors), as a
  container runtime (``docker run --memory``, compose's ``mem_limit``, Kubernetes) or Slurm sets
  it; None when unlimited or unknown. ``Settings.job_memory_bytes`` stays under it by default.
- ``oom_kills``: how many processes the kernel's OOM killer has taken in that group (v2
  ``memory.events``, v1 ``memory.oom_control``); a supervisor that sees it grow while its child
  died of a SIGKILL it did not send knows the child ran out of memory.
- ``out_of_memory_message``: the one sentence of every out-of-memory failure, with the limit and
  what to change.
"""

from __future__ import annotations

from pathlib import Path

UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as the largest page-aligned 63-bit number
CGROUP_ROOT = Path("/sys/fs/cgroup")
ADVICE = "reduce training.batch_size or encoding.time_steps (or the network's size)"


def _groups() -> list[Path]:
    """The memory cgroup folders of this process, itself first, then its ancestors."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1
            base = CGROUP_ROOT / "memory"
            break
    else:
        for line in lines:
            if line.startswith("0::"):  # v2 (unified): one hierarchy for all controllers
                _, _, path = line.split(":", 2)
                base = CGROUP_ROOT if (CGROUP_ROOT / "cgroup.controllers").exists() else CGROUP_ROOT / "unified"
                break
        else:
            return []
    folder = base / path.lstrip("/")
    found = []
    while True:
        found.append(folder)
        if folder == base:
            return found
        folder = folder.parent


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text in ("", "max") else int(text)


def cgroup_limit() -> int | None:
    """This process's memory limit from its control groups in bytes; None when there is none."""
    limits = []
    for folder in _groups():
        for name in ("memory.max", "memory.limit_in_bytes"):
            value = _read_int(folder / name)
            if value is not None and value < UNLIMITED:
                limits.append(value)
    return min(limits) if limits else None


def oom_kills() -> int | None:
    """Processes the OOM killer took in this process's memory control group so far; None when unknown."""
    groups = _groups()
    if not groups:
        return None
    for name in ("memory.events", "memory.oom_control"):
        try:
            lines = (groups[0] / name).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return None


def out_of_memory_message(limit: int, detail: str | None = None) -> str:
    """``ran out of memory (limit N MiB; DETAIL): reduce training.batch_size or encoding.time_steps ...``"""
    return f"ran out of memory (limit {limit >> 20} MiB{'; ' + detail if detail else ''}): {ADVICE}"
