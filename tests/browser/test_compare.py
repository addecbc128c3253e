"""The compare view and the sweep page in headless Chromium against the real service: pick two
finished jobs with the job list's checkboxes and compare them (figures, the spec fields that
differ, overlaid curves, NeuroBench spiking metrics; the URL holds the selection); open a running
search and see a trial pruned with its reason, the best trial marked and the parallel coordinates;
cancel the whole sweep. Screenshots: docs/img/compare.png and docs/img/sweep.png."""

from __future__ import annotations

import copy
import time

import pytest

from .conftest import TINY_SPEC, docs_screenshot, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # each training child starts slowly on a loaded machine
TRACES = "(id) => (document.getElementById(id).data || []).length"
# learns within an epoch; threshold 500 silences the hidden layer (chance accuracy), so it is pruned
SEARCH_SPEC = {"network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                                      {"type": "dense", "units": 10, "threshold": 5}]},
               "encoding": {"time_steps": 150},
               "training": {"epochs": 3, "batch_size": 8, "max_train_samples": 200, "max_test_samples": 60}}
SPACE = {"training.lr": {"low": 1.8e-2, "high": 2.2e-2},
         "network.layers[0].threshold": {"choices": [5, 500]}}


def test_compare_two_finished_jobs(page, dashboard):
    specs = [copy.deepcopy(TINY_SPEC) for _ in range(2)]
    for spec in specs:
        spec["training"]["epochs"] = 2
    specs[1]["training"]["lr"] = 0.003
    specs[1]["network"]["layers"][0]["threshold"] = 4
    with dashboard.client() as client:
        ids = [client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec, "name": f"compare {k + 1}"})
               .json()["id"] for k, spec in enumerate(specs)]
    for job_id in ids:
        assert dashboard.wait_for(job_id, {"succeeded", "failed", "cancelled"}, 1100)["state"] == "succeeded"

    sign_in(page, dashboard)
    assert "disabled" in page.get_attribute("#compare-selected", "class")
    for job_id in ids:
        page.check(f"[data-pick='{job_id}']")
    page.wait_for_selector("#compare-selected:not(.disabled)")
    time.sleep(2.5)  # the list refreshes meanwhile: the checks stay
    assert all(page.is_checked(f"[data-pick='{job_id}']") for job_id in ids)
    page.click("#compare-selected")
    page.wait_for_url("**/#/compare?jobs=*")
    assert page.url.split("jobs=")[1].split(",") == ids  # the URL holds the selection
    page.wait_for_selector("#compare-diff-table")

    diff = {row.get_attribute("data-field"): [cell.text_content() for cell in row.query_selector_all("td")]
            for row in page.query_selector_all("#compare-diff-table tbody tr[data-field]")}
    assert diff == {"network.layers[0].threshold": ["5", "4"], "training.lr": ["0.001", "0.003"]}
    figures = page.query_selector_all("#compare-figures-table tbody tr[data-row='epochs'] td")
    assert [cell.text_content() for cell in figures] == ["2 / 2", "2 / 2"]
    sparsity = [cell.text_content() for cell in
                page.query_selector_all("#compare-figures-table tbody tr[data-row='activation sparsity'] td")]
    assert all(0 < float(value) < 1 for value in sparsity), sparsity
    page.wait_for_function(f"() => ({TRACES})('compare-test_accuracy') === 2")
    assert page.evaluate("() => document.getElementById('compare-test_accuracy').data.map(t => t.x.length)") == [2, 2]
    assert page.evaluate(f"() => ({TRACES})('compare-firing_rates')") == 4  # 2 jobs x 2 layers
    assert page.evaluate(f"() => ({TRACES})('compare-synaptic_operations')") == 2
    docs_screenshot(page, "compare.png")

    # a shared link opens the same comparison; the job page shows the spiking metrics too
    page.goto(f"{dashboard.url}/#/compare?jobs={ids[1]},{ids[0]}")
    page.wait_for_selector("#compare-diff-table tr[data-field='training.lr']")
    assert [c.text_content() for c in page.query_selector_all("#compare-diff-table tr[data-field='training.lr'] td")] \
        == ["0.003", "0.001"]
    page.goto(f"{dashboard.url}/#/jobs/{ids[0]}")
    page.wait_for_selector("#spiking-card:not([hidden]) #spiking-synaptic_operations .main-svg")
    assert "synaptic operations per sample" in page.text_content("#spiking-latest")


def _seed() -> int:
    """A seed whose random search tries threshold 5 first and 500 second (see hm2bp_service.search)."""
    from hm2bp_service.search import suggest

    for seed in range(100):
        first, second = (suggest({"method": "random", "space": SPACE, "seed": seed + k}, [], 1)[0] for k in range(2))
        if (first["network.layers[0].threshold"], second["network.layers[0].threshold"]) == (5, 500):
            return seed
    raise AssertionError("no seed found")


def test_running_sweep_shows_a_pruned_trial_and_is_cancelled(page, dashboard):
    with dashboard.client() as client:
        made = client.post("/v1/sweeps", json={
            "dataset": "builtin:digits", "spec": SEARCH_SPEC, "method": "random", "space": SPACE, "budget": 4,
            "max_concurrent": 1, "pruner": "median", "prune_startup_trials": 1, "seed": _seed(),
            "name": "lr and threshold search"})
        assert made.status_code == 201, made.text
        sweep_id = made.json()["id"]
    sign_in(page, dashboard)
    page.click("a[href='#/sweeps']")
    page.click(f"tr[data-sweep='{sweep_id}'] a")
    page.wait_for_url(f"**/#/sweeps/{sweep_id}")
    page.wait_for_function("() => (document.getElementById('sweep-state') || {}).textContent")  # first poll drawn
    assert page.text_content("#sweep-state") == "active"

    # the second trial (the silent network) falls behind the first after one epoch and is pruned
    page.wait_for_selector("#sweep-table tr[data-state='pruned']", timeout=1_100_000)
    reason = page.text_content("#sweep-table tr[data-state='pruned'] .reason")
    assert "pruned after epoch 1" in reason and "below the median" in reason
    page.wait_for_selector("#sweep-table tr[data-state='running'], #sweep-table tr[data-state='queued']",
                           timeout=120_000)  # the search goes on with its third trial
    best = page.get_attribute("#sweep-table tr.best", "data-state")
    assert best == "succeeded" and "Best so far" in page.text_content("#sweep-best")
    # parallel coordinates (SVG): an axis per parameter and the objective, a line per scored trial
    page.wait_for_function("() => (document.getElementById('sweep-parcoords').data || []).length >= 1")
    dimensions = page.evaluate(
        "() => JSON.parse(document.getElementById('sweep-parcoords').dataset.dimensions).map(d => d.label)")
    assert page.evaluate("() => document.getElementById('sweep-parcoords').data[0].type") == "scatter"
    assert dimensions[:2] == ["training.lr", "network.layers[0].threshold"]
    assert dimensions[2].startswith("test_accuracy")
    assert page.text_content("#sweep-table tr[data-state='pruned'] .badge") == "pruned"
    docs_screenshot(page, "sweep.png")

    page.click("#sweep-cancel")
    page.wait_for_function("() => document.getElementById('sweep-state').textContent === 'done'", timeout=300_000)
    with dashboard.client() as client:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["counts"].get("pruned") == 1 and sweep["counts"].get("cancelled", 0) >= 1
    assert len(sweep["jobs"]) < 4  # no trial was made after the cancel
