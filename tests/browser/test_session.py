"""The session cookie and CORS at the HTTP level (no browser needed): the cookie is HttpOnly and
SameSite=Strict; streams and reads accept it from the API's own origin (or a configured one) and
never from another; CORS is closed unless HM2BP_CORS_ORIGINS opens it."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from service.harness import REPO
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from api.app import create_app
from hm2bp_service.settings import Settings

from .conftest import TINY_SPEC


@pytest.fixture(scope="module")
def cookie(dashboard) -> str:
    with dashboard.client() as client:
        response = client.post("/v1/session")
    assert response.status_code == 200 and response.json()["user"] == "local"
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/v1" in header
    return response.cookies["hm2bp_session"]


def test_dashboard_and_its_assets_are_served_without_auth(dashboard):
    page = httpx.get(dashboard.url + "/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/vendor/plotly.min.js"' in page.text and "cdn" not in page.text.lower()
    plotly = httpx.get(dashboard.url + "/static/vendor/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith("text/javascript")
    assert len(plotly.content) > 1_000_000
    assert httpx.get(dashboard.url + "/static/app.js").status_code == 200
    for module in ("app.js", "js/router.js", "js/views/job.js"):  # ES modules load only with a JavaScript type
        served = httpx.get(f"{dashboard.url}/static/{module}")
        assert served.status_code == 200 and served.headers["content-type"].startswith("text/javascript"), module
    assert httpx.get(dashboard.url + "/static/../worker/settings.py").status_code == 404


def test_cookie_is_honoured_only_from_allowed_origins(dashboard, cookie):
    jar = {"hm2bp_session": cookie}
    own = dashboard.url
    # GET, no Origin: a browser's same-origin read
    assert httpx.get(own + "/v1/session", cookies=jar).json() == {"user": "local"}
    assert httpx.get(own + "/v1/session", cookies=jar, headers={"Origin": own}).status_code == 200
    assert httpx.get(own + "/v1/session", cookies=jar, headers={"Origin": "http://evil.example"}).status_code == 401
    assert httpx.get(own + "/v1/session", cookies=jar, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 401
    # a state-changing request needs an Origin (browsers always send one on POST)
    body = {"dataset": "builtin:digits", "spec": TINY_SPEC}
    assert httpx.post(own + "/v1/jobs", cookies=jar, json=body).status_code == 401
    with httpx.Client(cookies=jar) as client:
        created = client.post(own + "/v1/jobs", json=body, headers={"Origin": own})
        assert created.status_code == 201
        client.post(own + f"/v1/jobs/{created.json()['id']}/cancel", headers={"Origin": own})

    ws = "ws" + own[len("http"):] + f"/v1/jobs/{created.json()['id']}/stream"
    with connect(ws, additional_headers={"Cookie": f"hm2bp_session={cookie}", "Origin": own},
                 open_timeout=10) as stream:
        assert stream.recv(timeout=10)
    with pytest.raises(InvalidStatus) as refused:
        connect(ws, additional_headers={"Cookie": f"hm2bp_session={cookie}", "Origin": "http://evil.example"},
                open_timeout=10)
    assert refused.value.response.status_code == 401

    cleared = httpx.delete(own + "/v1/session", cookies=jar)
    assert cleared.status_code == 204 and 'hm2bp_session=""' in cleared.headers["set-cookie"]


def test_cors_is_closed_by_default_and_opened_by_settings(dashboard, tmp_path):
    preflight = {"Origin": "http://lab.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    closed = httpx.options(dashboard.url + "/v1/jobs", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    read = httpx.get(dashboard.url + "/healthz", headers={"Origin": "http://lab.example"})
    assert "access-control-allow-origin" not in read.headers

    settings = Settings(data_dir=tmp_path, cors_origins="http://lab.example, https://other.example/")
    with TestClient(create_app(settings)) as client:
        opened = client.options("/v1/jobs", headers=preflight)
        assert opened.status_code == 200 and opened.headers["access-control-allow-origin"] == "http://lab.example"
        assert "authorization" in opened.headers["access-control-allow-headers"].lower()
        other = client.options("/v1/jobs", headers={**preflight, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_spec_serves_the_examples_of_built_in_datasets(dashboard):
    """The New job form's spec for builtin:digits is examples/digits.yaml, served whole (resolved),
    not a second copy in the page."""
    from hm2bp_core.spec import load_spec

    with dashboard.client() as client:
        info = client.get("/v1/spec").json()
    assert info["examples"]["builtin:digits"] == load_spec(REPO / "examples" / "digits.yaml").to_dict()
    assert info["examples"]["builtin:digits"]["training"]["epochs"] != info["defaults"]["training"]["epochs"]
    assert set(info["examples"]) == {"builtin:digits"}  # only built-ins with an examples/NAME.yaml
