"""The commands of benchmarks/upload_pressure.py and benchmarks/api_memory.py run (tiny uploads),
so they don't rot: each starts the API of this checkout as the image runs it and prints its table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_upload_pressure_reads_the_job_alone_and_during_the_uploads():
    out = run("benchmarks/upload_pressure.py", "--size-mb", "2", "--count", "2", "--idle", "0.5")
    rows = re.findall(r"^\| \S+ \| (idle|2 uploads of 2 MB at once) \| (\d+) \|.*\| (\d+) \| (\d+) \| (\d+) \|"
                      r" ([\d.-]+) \| ([\d,-]+) \|$", out, re.M)
    assert [row[0] for row in rows] == ["idle", "2 uploads of 2 MB at once"], out
    for _, reads, failed, before, peak, _, _ in rows:
        assert int(reads) > 0 and int(failed) == 0 and int(peak) >= int(before) > 0, out
    assert rows[1][6] == "201,201", out  # both uploads stored


def test_api_memory_reports_each_phase():
    out = run("benchmarks/api_memory.py", "--size-mb", "2", "--count", "1")
    phases = re.findall(r"^\| (started|after 1 uploads of 2 MB|after fit-checking a job on each \(1 submits\)) \|"
                        r" (\d+) \| (\d+) \|$", out, re.M)
    assert [p[0] for p in phases] == ["started", "after 1 uploads of 2 MB",
                                      "after fit-checking a job on each (1 submits)"], out
    assert all(int(rss) > 0 and int(peak) > 0 for _, rss, peak in phases), out
