"""Webhooks cannot reach inside (issue 20, item 2): every spelling of a loopback, private,
link-local, multicast, reserved, unspecified, IPv4-mapped or cloud-metadata address is refused at
submit (422 naming ``webhook_url`` and why) by the package's API, whose allow-list is the default
(empty); and again at delivery, where the attempt goes to the address that was checked, with the
URL's name in ``Host`` and in TLS SNI, against real sockets on loopback. Fails on main: submit
accepted these URLs (201), and there was no ``hm2bp_service.egress`` nor a checked delivery."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from service.harness import TINY_SPEC

from hm2bp_service import egress
from hm2bp_service.store.records import WebhookDeliveryRecord
from worker import webhooks

REFUSED = {
    "http://127.0.0.1:6379/": "loopback address",
    "http://127.1/": "loopback address",
    "http://0x7f000001/": "loopback address",
    "http://2130706433/": "loopback address",
    "http://0177.0.0.1/": "loopback address",
    "http://017700000001/": "loopback address",
    "http://localhost:8000/": "loopback address",
    "http://api.localhost/": "loopback address",
    "http://[::1]/": "loopback address",
    "http://[::ffff:127.0.0.1]/": "IPv4-mapped address",
    "http://[::ffff:169.254.169.254]/": "IPv4-mapped address",
    "http://10.0.0.7/": "private address",
    "http://172.16.3.4/": "private address",
    "http://192.168.1.1/": "private address",
    "http://[fd12:3456::1]/": "private address",
    "http://169.254.169.254/latest/meta-data/": "cloud metadata address",
    "http://[fd00:ec2::254]/": "cloud metadata address",
    "http://100.100.100.200/": "cloud metadata address",
    "http://metadata.google.internal/computeMetadata/v1/": "cloud metadata address",
    "http://169.254.1.1/": "link-local address",
    "http://[fe80::1]/": "link-local address",
    "http://224.0.0.1/": "multicast address",
    "http://[ff02::1]/": "multicast address",
    "http://0.0.0.0/": "unspecified address",
    "http://[::]/": "unspecified address",
    "http://240.0.0.1/": "reserved address",
    "http://100.64.0.1/": "non-public address",
    "http://[2002:7f00:1::]/": "IPv4-embedding address",
    "http://[64:ff9b::a00:1]/": "IPv4-embedding address",
}


@pytest.mark.parametrize("url", sorted(REFUSED))
def test_every_inside_address_is_refused(url):
    with pytest.raises(egress.Blocked) as refused:
        egress.resolve(url, egress.AllowList())
    assert refused.value.reason == REFUSED[url]


def test_public_addresses_pass_and_the_allow_list_opens_what_it_names():
    public = egress.resolve("https://93.184.215.14:8443/hook", egress.AllowList())
    assert (public.scheme, public.host, public.port, public.address) == \
        ("https", "93.184.215.14", 8443, "93.184.215.14")
    allow = egress.AllowList.parse("127.0.0.0/8, ::1, hooks.lab.internal, localhost")
    assert egress.resolve("http://0x7f000001:9/", allow).address == "127.0.0.1"
    assert egress.resolve("http://[::1]:9/", allow).address == "::1"
    assert egress.resolve("http://localhost:9/", allow).address in ("127.0.0.1", "::1")
    with pytest.raises(egress.Blocked):
        egress.resolve("http://10.0.0.1/", allow)  # only what it names
    assert ipaddress.ip_address("169.254.169.254") in egress.METADATA_ADDRESSES


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/", "http://0x7f000001/", "http://169.254.169.254/",
                                 "http://metadata.google.internal/", "http://[::ffff:10.0.0.1]/", "http://10.1.2.3/"])
def test_submit_refuses_inside_addresses_by_default(secured, url):
    alice = secured.service.client("alice")
    before = alice.get("/v1/jobs").json()["total"]  # the package's cluster is shared with other tests
    spec = {**TINY_SPEC, "training": {**TINY_SPEC["training"], "epochs": 1}}
    for path, body in (("/v1/jobs", {"dataset": "builtin:digits", "spec": spec, "webhook_url": url}),
                       ("/v1/sweeps", {"dataset": "builtin:digits", "spec": spec, "webhook_url": url,
                                       "grid": {"training.lr": [1e-3]}})):
        refused = alice.post(path, json=body)
        assert refused.status_code == 422, refused.text
        errors = refused.json()["errors"]
        assert [e["field"] for e in errors] == ["webhook_url"]
        assert errors[0]["message"].startswith("refused: the host") and "address" in errors[0]["message"]
    assert alice.get("/v1/jobs").json()["total"] == before  # nothing was queued


# ---------------------------------------------------------------------- at delivery, against real sockets
class Seen:
    def __init__(self):
        self.requests: list[tuple[str, dict[str, str]]] = []


def serve(handler_seen: Seen, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            handler_seen.requests.append((self.path, dict(self.headers.items())))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def delivery(url: str) -> WebhookDeliveryRecord:
    now = datetime.datetime.now(datetime.UTC)
    return WebhookDeliveryRecord(id="whd_test", job_id="job_test", url=url, receiver=egress.receiver_of(url),
                                 event="job.succeeded", body='{"id":"whd_test"}', state="pending", attempts=1,
                                 next_attempt_at=now, last_status=None, last_error=None, created_at=now,
                                 delivered_at=None)


def attempt(url: str, allow: egress.AllowList, deadline: float = 5.0) -> webhooks.Outcome:
    async def run() -> webhooks.Outcome:
        async with httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            return await webhooks.post(client, delivery(url), "whsec_test", allow, deadline, 65536)
    # in a thread of its own: the test process may already run an event loop (Playwright's, when
    # the browser tests ran before), and asyncio.run refuses to start a second one in that thread
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def test_delivery_checks_again_and_goes_to_the_checked_address_with_the_name_in_host():
    seen = Seen()
    server = serve(seen)
    port = server.server_address[1]
    try:
        # submitted while allowed, delivered under the default: refused before any connection
        refused = attempt(f"http://127.0.0.1:{port}/hook", egress.AllowList())
        assert (refused.status, refused.error) == (None, "refused: loopback address") and seen.requests == []
        assert attempt(f"http://localhost:{port}/hook", egress.AllowList()).error == "refused: loopback address"
        # allowed by name: the connection goes to the address it resolved to, Host keeps the name
        done = attempt(f"http://localhost:{port}/hook", egress.AllowList.parse("localhost"))
        assert (done.status, done.error, done.delivered) == (200, None, True)
        path, headers = seen.requests[-1]
        assert path == "/hook" and headers["Host"] == f"localhost:{port}"
        assert headers["X-HM2BP-Signature"].startswith("sha256=")
    finally:
        server.shutdown()
        server.server_close()


def test_tls_keeps_the_name_in_sni_while_connecting_to_the_checked_address(tmp_path):
    """The server's certificate is self-signed (so the attempt is ``TLS failed``): what counts is
    that the handshake to 127.0.0.1 named the URL's host, so a real certificate is checked against it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names: list[str | None] = []
    context.sni_callback = lambda _sock, server_name, _ctx: names.append(server_name)
    seen = Seen()
    server = serve(seen, context)
    try:
        outcome = attempt(f"https://localhost:{server.server_address[1]}/hook", egress.AllowList.parse("localhost"))
        assert outcome.error == "TLS failed" and names == ["localhost"] and seen.requests == []
    finally:
        server.shutdown()
        server.server_close()


def test_a_name_that_does_not_resolve_is_a_short_status():
    assert attempt("http://no-such-host.invalid/hook", egress.AllowList()).error == "host not found"
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert attempt(f"http://127.0.0.1:{port}/", egress.AllowList.parse("127.0.0.1")).error == "connection failed"
