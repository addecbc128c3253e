"""The dashboard under test: ``hm2bp serve`` (API, one worker, SQLite, embedded Redis) in a temporary
folder, and headless Chromium driven by Playwright.

Chromium is Debian's (``apt-get install chromium``), at /usr/bin/chromium or CHROMIUM; Playwright is
the Python package only (never ``playwright install``). Without the binary the browser tests skip
and say why; the HTTP-level tests of the session cookie and CORS still run.
Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from service.harness import HM2BP, REPO, free_port, stop, wait_api

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "tests" / "artifacts"
DOCS_IMG = REPO / "docs" / "img"  # screenshots the docs show, redrawn by the tests that make them
TINY_SPEC = {
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 60},
    "training": {"epochs": 3, "batch_size": 32, "max_train_samples": 300, "max_test_samples": 100},
}


@dataclass
class Dashboard:
    url: str
    token: str
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def wait_for(self, job_id: str, states: set[str], seconds: float = 120) -> dict:
        deadline = time.monotonic() + seconds
        with self.client() as client:
            while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] not in states:
                assert time.monotonic() < deadline, \
                    f"job {job_id} still {job['state']}:\n{self.log.read_text()[-3000:]}"
                time.sleep(0.2)
        return job


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory) -> Dashboard:
    folder = tmp_path_factory.mktemp("dashboard")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}  # CORS closed: the default
    env.update(OMP_NUM_THREADS="1", HM2BP_CANCEL_GRACE_SECONDS="1", HM2BP_RASTER_SAMPLES="4")
    port = free_port()
    log = folder / "serve.log"
    serve = subprocess.Popen([HM2BP, "serve", "--port", str(port), "--data-dir", str(folder / "data")], env=env,
                             cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # kernels checked and the worker up before the token is shown
        while not (found := re.search(r"token \([^)]*\): (hm2bp_\S+)", log.read_text())):
            assert serve.poll() is None and time.monotonic() < deadline, \
                f"hm2bp serve did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
        wait_api(f"http://127.0.0.1:{port}", serve, log)
        yield Dashboard(f"http://127.0.0.1:{port}", found.group(1), log)
    finally:
        stop(serve, 30)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM) to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package only)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context on the dashboard; page errors (CSP violations included) fail the test."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1440, "height": 1000},
                                  device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text else None)
    yield page
    # a test's route handler may be fetching a poll of the page right now: it must not raise into the next test
    page.unroute_all(behavior="ignoreErrors")
    context.close()
    assert not problems, problems


def sign_in(page, dashboard: Dashboard) -> None:
    page.goto(dashboard.url + "/")
    page.fill("#token", dashboard.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#jobs-table")


def docs_screenshot(page, name: str) -> None:
    """A screenshot for the docs (docs/img/NAME), after the charts' transitions settle."""
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(600)
    page.screenshot(path=str(DOCS_IMG / name), full_page=True)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
