"""Schemathesis against the served OpenAPI document, every operation, with a valid token: no 5xx,
and every 4xx is a JSON body whose ``detail`` names the problem. (No worker runs: the jobs this
submits stay queued, and are cancelled at the end.)

Schemathesis's pytest plugin does not run under this pytest, so each operation's strategy is
driven by Hypothesis directly; failures are collected over all operations, not shrunk."""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

MAX_EXAMPLES = 30


def check(case, response) -> str | None:
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    if response.status_code >= 500:
        return where
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            return where + " (not JSON)"
        if not isinstance(body.get("detail"), str) or len(body["detail"]) <= 5:
            return where + " (no detail)"
        if response.status_code == 422 and not body.get("errors"):
            return where + " (422 without the fields at fault)"
    return None


def test_no_server_errors_and_named_client_errors(secured):
    url, token = secured.service.url, secured.service.tokens["bob"]
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    problems: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            statuses[response.status_code] += 1
            problem = check(case, response)
            assert problem is None, problem

        try:
            run()
        except AssertionError as exc:
            problems[operation.label] = str(exc).splitlines()[0]
    print(f"{operations} operations, responses by status: {dict(sorted(statuses.items()))}")
    assert operations >= 12 and sum(statuses.values()) >= operations * 10
    assert any(200 <= code < 300 for code in statuses) and any(400 <= code < 500 for code in statuses)
    assert not problems, problems


def test_cancel_what_the_fuzzer_queued(secured):
    client = secured.service.client("bob")
    for job in client.get("/v1/jobs", params={"limit": 500}).json()["items"]:
        client.post(f"/v1/jobs/{job['id']}/cancel")
