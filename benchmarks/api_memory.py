"""API memory under fit checks (not a test): the resident memory of one API process that accepts
``--count`` uploads of ``--size-mb`` each and then fit-checks one job on each of them.

    .venv/bin/python benchmarks/api_memory.py                        # this checkout
    .venv/bin/python benchmarks/api_memory.py --repo /path/to/other  # another checkout, same venv

It starts ``uvicorn api.app:create_app --factory`` from ``--repo`` on a free loopback port (SQLite
and artifacts in a temporary folder, the machine's Redis at 127.0.0.1:6379 for the broker),
uploads the datasets (``.npz`` of random 28 x 28 uint8 images, each different), then resets the
process's peak-RSS counter (``/proc/PID/clear_refs``, root only) and submits one job per dataset,
so that the second table row is what fit checks alone cost. It prints the process's RSS and peak
RSS (VmRSS, VmHWM) after each phase, in MiB. Everything it made is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def make_npz(path: Path, size_mb: int, seed: int) -> None:
    samples = size_mb * (1 << 20) // 784
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(samples, 28, 28), dtype=np.uint8)
    y = (np.arange(samples) % 10).astype(np.int64)
    np.savez(path, x_train=x, y_train=y, x_test=x[:1000], y_test=y[:1000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose API is measured")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hm2bp-apimem-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
    env.update(HM2BP_DATA_DIR=str(folder / "data"), HM2BP_REDIS_URL="redis://127.0.0.1:6379/15", OMP_NUM_THREADS="1",
               PYTHONPATH=str(args.repo))
    api = None
    try:
        files = []
        for index in range(args.count):
            files.append(folder / f"upload-{index}.npz")
            make_npz(files[-1], args.size_mb, seed=index)
        token = subprocess.run([sys.executable, "-c", "from api.cli import app; app()", "token", "create", "--user",
                                "bench"], env=env, cwd=args.repo, capture_output=True, text=True,
                               check=True).stdout.strip().splitlines()[-1]
        api = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port)], env=env, cwd=args.repo,
                               stdout=open(folder / "api.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                              timeout=600)
        for _ in range(300):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        rows = [("started", memory(api.pid))]
        datasets = []
        for path in files:
            with open(path, "rb") as handle:
                answer = client.post("/v1/datasets", files={"file": (path.name, handle)})
            answer.raise_for_status()
            datasets.append(answer.json()["id"])
        rows.append((f"after {args.count} uploads of {args.size_mb} MB", memory(api.pid)))
        Path(f"/proc/{api.pid}/clear_refs").write_text("5")  # peak RSS := current RSS
        for dataset in datasets:
            answer = client.post("/v1/jobs", json={"dataset": dataset, "spec": {"training": {"epochs": 1}}})
            assert answer.status_code == 201, answer.text
        rows.append((f"after fit-checking a job on each ({len(datasets)} submits)", memory(api.pid)))
        print(f"API process of {args.repo}")
        print("| phase | RSS MiB | peak RSS MiB (since the last row's reset) |")
        print("|---|---|---|")
        for phase, found in rows:
            print(f"| {phase} | {found['VmRSS']:.0f} | {found['VmHWM']:.0f} |")
    finally:
        if api is not None:
            os.killpg(api.pid, signal.SIGTERM)
            api.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
