"""The dashboard in headless Chromium against the real service: sign in, submit, watch the live
charts, see the job succeed with its confusion matrix and spike rasters, download the model; drop
the stream mid-run and resume without duplicated points; cancel from the page; HTML in names stays
text; the page cannot call the API from another origin. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import copy
import json
import time

import pytest
from websockets.sync.client import connect

from .conftest import TINY_SPEC, docs_screenshot, screenshot, sign_in

pytestmark = pytest.mark.slow

LOSS_POINTS = "() => (document.getElementById('chart-loss').data || [{x: []}])[0].x.length"
LOSS_STEPS = "() => Array.from(document.getElementById('chart-loss').data[0].x)"


def job_events(dashboard, job_id: str) -> list[dict]:
    url = "ws" + dashboard.url[len("http"):] + f"/v1/jobs/{job_id}/stream"
    with connect(url, additional_headers={"Authorization": f"Bearer {dashboard.token}"}, open_timeout=10) as ws:
        return [json.loads(message) for message in ws]


def test_sign_in_rejects_a_wrong_token(page, dashboard):
    page.goto(dashboard.url + "/")
    page.fill("#token", "hm2bp_not-a-real-token")
    page.click("button[type=submit]")
    page.wait_for_selector("#signin-error:not(:empty)")
    assert page.text_content("#signin-error") == "This token was not accepted."
    assert page.evaluate("sessionStorage.getItem('hm2bp.token')") is None


@pytest.mark.timeout(1800)
def test_submit_watch_live_charts_and_download_the_model(page, dashboard, tmp_path):
    sign_in(page, dashboard)
    page.click("a[href='#/submit']")
    page.wait_for_selector("#spec-form fieldset")
    assert page.input_value("[data-field='spec.training.epochs']") == "200"  # the paper's defaults
    # every built-in is offered; one the service lacks and cannot download is shown but cannot be picked
    assert page.is_disabled("#job-dataset option[value='builtin:nmnist']")
    assert "not on this service" in page.text_content("#job-dataset option[value='builtin:nmnist']")
    page.select_option("#job-dataset", "builtin:mnist")
    assert "the first job downloads it" in page.text_content("#job-dataset-note")
    page.select_option("#job-dataset", "builtin:digits")
    assert page.is_hidden("#job-dataset-note")  # bundled: nothing to say

    # the API's validation error appears beside the field it names
    page.fill("[data-field='spec.training.epochs']", "0")
    page.click("#submit-button")
    page.wait_for_selector("[data-error-for='spec.training.epochs']:not(:empty)")
    assert "greater than or equal to 1" in page.text_content("[data-error-for='spec.training.epochs']")
    assert "invalid" in page.get_attribute("[data-field='spec.training.epochs']", "class")

    page.click("#spec-mode")  # edit as JSON
    page.fill("#spec-json", json.dumps(TINY_SPEC))
    page.fill("#job-title", "digits tiny")
    page.click("#submit-button")
    page.wait_for_url("**/#/jobs/job_*")
    job_id = page.url.rsplit("/", 1)[1]

    # the charts gain points while the job runs
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 900  # generous: on a busy machine the worker's child takes minutes to start
    while (state := page.text_content("#job-state")) != "succeeded":
        seen.append((state, page.evaluate(LOSS_POINTS)))
        assert time.monotonic() < deadline and state not in ("failed", "cancelled"), \
            (state, dashboard.log.read_text()[-3000:])
        time.sleep(0.1)
    while_running = [points for state, points in seen if state == "running"]
    assert while_running and while_running[-1] > 0 and while_running[-1] > while_running[0], seen

    page.wait_for_selector("#confusion-card:not([hidden]) .main-svg")
    page.wait_for_selector("#raster-card:not([hidden]) .main-svg")
    time.sleep(0.5)  # let the last chart transitions settle for the screenshot
    events = job_events(dashboard, job_id)
    progress_steps = [(e["data"]["epoch"] - 1) * e["data"]["steps"] + e["data"]["step"]
                      for e in events if e["type"] == "progress"]
    assert page.evaluate(LOSS_STEPS) == progress_steps  # every progress event once
    assert page.evaluate("document.getElementById('chart-accuracy').data[1].x.length") == 3
    assert page.evaluate("document.getElementById('chart-firing').data.length") == 2
    confusion = page.evaluate("document.getElementById('chart-confusion').data[0].z")
    assert sum(map(sum, confusion)) == 100
    raster = page.evaluate("document.getElementById('chart-raster').data.map(t => [t.name, t.x.length])")
    assert [name for name, _ in raster] == ["input", "dense 40", "dense 10"] and raster[0][1] > 0
    assert page.locator("#raster-sample option").count() == 4
    assert "epoch 3/3" in page.text_content("#job-log")
    assert json.loads(page.text_content("#job-spec"))["training"]["max_train_samples"] == 300
    screenshot(page, "dashboard-job.png")

    with page.expect_download() as download_info:
        page.click("#download-model")
    download = download_info.value
    assert download.suggested_filename == "model.safetensors"
    saved = tmp_path / "model.safetensors"
    download.save_as(saved)
    from safetensors.torch import load_file

    assert set(load_file(saved)) == {"layers.0.weight", "layers.1.weight"}

    page.click("a[data-nav='jobs']")
    row = page.locator(f"tr[data-job='{job_id}']")
    row.wait_for()
    assert row.locator(".badge").text_content() == "succeeded"
    assert row.locator("td").nth(4).text_content().endswith("%")
    page.select_option("#state-filter", "running")
    page.wait_for_function(f"() => !document.querySelector(\"tr[data-job='{job_id}']\")")
    page.select_option("#state-filter", "")
    row.wait_for()
    screenshot(page, "dashboard-jobs.png")


@pytest.mark.timeout(1800)
def test_stream_resumes_after_a_drop_and_cancel_from_the_page(page, dashboard):
    spec = copy.deepcopy(TINY_SPEC)
    spec["training"].update(epochs=200, max_train_samples=600)
    with dashboard.client() as client:
        job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec, "name": "long run"}).json()
    sign_in(page, dashboard)
    page.goto(f"{dashboard.url}/#/jobs/{job['id']}")
    page.wait_for_function(f"() => ({LOSS_POINTS})() >= 2", timeout=900_000)  # minutes on a busy machine

    page.evaluate("window.hm2bpStream.drop()")  # the connection breaks as on a network failure
    page.wait_for_function("() => document.getElementById('stream-status').textContent === 'live' "
                           "&& document.getElementById('stream-status').dataset.reconnects === '1'")
    before = page.evaluate(LOSS_POINTS)
    page.wait_for_function(f"() => ({LOSS_POINTS})() > {before}", timeout=60_000)  # live again after the resume

    listing = page.context.new_page()  # the job list while this one runs (sessionStorage is per tab)
    sign_in(listing, dashboard)
    listing.locator(f"tr[data-job='{job['id']}'] .bar-label").filter(has_text="ETA").wait_for()
    screenshot(listing, "dashboard-jobs-running.png")
    listing.close()

    page.click("#cancel")
    page.click("#cancel-yes")  # cancel asks first
    page.wait_for_function("() => document.getElementById('job-state').textContent === 'cancelled'", timeout=60_000)
    assert page.is_disabled("#cancel")
    assert page.text_content("#stream-status") == "stream ended"
    page.wait_for_timeout(700)  # the last buffered points
    steps = page.evaluate(LOSS_STEPS)
    assert steps == sorted(set(steps))  # resumed from the last event id: no point twice
    events = job_events(dashboard, job["id"])
    assert len(steps) == sum(e["type"] == "progress" for e in events)
    assert [e["data"]["state"] for e in events if e["type"] == "state"][-1] == "cancelled"


def test_html_in_names_renders_as_text(page, dashboard):
    import io

    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    buffer = io.BytesIO()
    x, y = (bunch.images / 16).astype(np.float32), bunch.target
    np.savez(buffer, x_train=x[:100], y_train=y[:100], x_test=x[100:150], y_test=y[100:150])
    evil = "<img src=x onerror=\"window.__pwned=1\"><b>bold</b>"
    with dashboard.client() as client:
        dataset = client.post("/v1/datasets", files={"file": ("d.npz", buffer.getvalue())}, data={"name": evil}).json()
        job = client.post("/v1/jobs", json={"dataset": dataset["id"], "spec": TINY_SPEC, "name": evil}).json()
        client.post(f"/v1/jobs/{job['id']}/cancel")
    sign_in(page, dashboard)
    link = page.locator(f"tr[data-job='{job['id']}'] td.name a")
    assert link.text_content() == evil and link.locator("b, img").count() == 0
    page.goto(f"{dashboard.url}/#/jobs/{job['id']}")
    page.wait_for_function(f"() => document.getElementById('job-name').textContent === {json.dumps(evil)}")
    assert page.locator("#job-name b, #job-name img").count() == 0
    page.goto(f"{dashboard.url}/#/submit")
    page.wait_for_selector(f"#job-dataset option[value='{dataset['id']}']", state="attached")
    assert page.text_content(f"#job-dataset option[value='{dataset['id']}']").startswith(evil)
    assert page.evaluate("window.__pwned") is None


def test_the_api_refuses_pages_of_other_origins(page, dashboard):
    """CORS is closed by default: a page served elsewhere cannot read the API, even with a token."""
    page.route("http://elsewhere.test/", lambda route: route.fulfill(content_type="text/html", body="<p>elsewhere</p>"))
    page.goto("http://elsewhere.test/")
    outcome = page.evaluate("""async ([url, token]) => {
        try { const r = await fetch(url + '/v1/jobs', {headers: {Authorization: 'Bearer ' + token}});
              return 'read ' + r.status; }
        catch (error) { return 'blocked: ' + error.name; } }""", [dashboard.url, dashboard.token])
    assert outcome == "blocked: TypeError"


def test_a_paper_model_is_drawn_beside_the_authors_curves(page, dashboard):
    """A job training the paper's 784-800-10 (every model default; a short run of it) on 28 x 28
    images: GET .../metrics names the paper row and carries the authors' logged runs, and the job
    page draws them dashed on the accuracy chart beside the job's own online and test accuracy."""
    import io

    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.pad(np.repeat(np.repeat(bunch.images, 3, axis=1), 3, axis=2), ((0, 0), (2, 2), (2, 2))) / 16  # 28 x 28
    buffer = io.BytesIO()
    np.savez(buffer, x_train=x[:200].astype(np.float32), y_train=bunch.target[:200],
             x_test=x[200:240].astype(np.float32), y_test=bunch.target[200:240])
    spec = {"training": {"epochs": 2, "max_train_samples": 30, "max_test_samples": 20, "device": "cpu"}}
    with dashboard.client() as client:
        dataset = client.post("/v1/datasets", files={"file": ("digits28.npz", buffer.getvalue())}).json()
        job = client.post("/v1/jobs", json={"dataset": dataset["id"], "spec": spec, "name": "paper model"}).json()
        tiny = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC}).json()
        client.post(f"/v1/jobs/{tiny['id']}/cancel")
        assert client.get(f"/v1/jobs/{tiny['id']}/metrics").json()["reference"] is None  # not a paper model
        reference = client.get(f"/v1/jobs/{job['id']}/metrics").json()["reference"]
    assert reference["row"] == "mnist-fc" and {"mnist-fc", "mnist-fc-ovth5"} <= set(reference["runs"])
    logged = reference["runs"]["mnist-fc"]["epochs"][0]
    assert (logged["train_accuracy"], logged["test_accuracy"]) == (0.9524, 0.9732)  # the authors' log, epoch 1
    dashboard.wait_for(job["id"], {"succeeded"}, seconds=300)

    sign_in(page, dashboard)
    page.goto(f"{dashboard.url}/#/jobs/{job['id']}")
    page.wait_for_selector("#accuracy-reference:not([hidden])")
    assert "paper row mnist-fc" in page.text_content("#accuracy-reference")
    page.wait_for_function("() => document.getElementById('chart-accuracy').data[1].x.length === 2")
    names = page.evaluate("() => document.getElementById('chart-accuracy').data.map((t) => t.name)")
    assert names[:2] == ["train", "test"] and "authors mnist-fc: test" in names and "authors mnist-fc: train" in names
    dashes = page.evaluate("() => document.getElementById('chart-accuracy').data.slice(2).map((t) => t.line.dash)")
    assert set(dashes) <= {"dash", "dot"} and dashes
    docs_screenshot(page, "dashboard-job-paper-reference.png")  # docs/reproduction.md shows it
