"""How shaper reaches Prometheus and the Pushgateway: TLS verified by default, a CA bundle, a
bearer token and basic auth, from the SHAPER_PROMETHEUS_* / SHAPER_PUSHGATEWAY_* settings.

A self-signed certificate is made here with the openssl CLI. Queries go to a real Prometheus (the
fixtures' own) through a small HTTPS front that checks the Authorization header (Prometheus has no
bearer-token check of its own); pushes go to a real Pushgateway serving TLS and basic auth from
its own web config."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
import warnings

import pandas as pd
import pytest

from shaper_pipelines.lib.export import PushError, push, sample
from shaper_pipelines.lib.prometheus import (HttpAccess, PrometheusQueryError, PrometheusSettings,
                                             PrometheusUnavailable, fetch_range, instant_value)

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and its key; the certificate is its own CA bundle."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=shaper-test", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class _Front(http.server.BaseHTTPRequestHandler):
    """HTTPS in front of a real Prometheus: records each Authorization header, answers 401 unless
    it is the one expected, and forwards the rest."""

    def log_message(self, *args):
        pass

    def _forward(self):
        server = self.server
        server.seen.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != server.expected:
            body = b'{"status":"error","errorType":"unauthorized","error":"bad credentials"}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        request = urllib.request.Request(server.upstream + self.path, data=data, method=self.command)
        if self.headers.get("Content-Type"):
            request.add_header("Content-Type", self.headers["Content-Type"])
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _forward


@pytest.fixture(scope="module")
def prometheus():
    from shaper_pipelines_tests.services.prometheus import start_prometheus

    server = start_prometheus()
    yield server
    server.stop()


@pytest.fixture
def front(certificate, prometheus):
    cert, key = certificate
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Front)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen, server.expected, server.upstream = [], f"Bearer {TOKEN}", prometheus.url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _fetch(url: str, access: HttpAccess, retries: int = 0) -> pd.Series:
    end = pd.Timestamp.now(tz="UTC").floor("min")
    return fetch_range(PrometheusSettings(url, timeout_seconds=10, retries=retries, backoff_seconds=0.01,
                                          access=access),
                       "vector(7)", end - pd.Timedelta(minutes=10), end, pd.Timedelta(minutes=1),
                       sleep=lambda _s: None)


def test_tls_is_verified_by_default_and_a_self_signed_endpoint_is_refused(front):
    server, url = front
    assert HttpAccess().verify() is True and HttpAccess().ssl_context().verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(PrometheusUnavailable, match="TLS verification failed.*SHAPER_PROMETHEUS_CA_BUNDLE"):
        _fetch(url, HttpAccess(bearer_token=TOKEN), retries=3)
    assert server.seen == []  # refused in the handshake: the token never left
    # The query client for selection rules is the same.
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        instant_value(PrometheusSettings(url, retries=0, access=HttpAccess(bearer_token=TOKEN)), "vector(1)")


def test_with_the_ca_bundle_the_bearer_token_reaches_the_real_prometheus(front, certificate):
    server, url = front
    values = _fetch(url, HttpAccess(ca_bundle=str(certificate[0]), bearer_token=TOKEN))
    assert len(values) == 10 and (values == 7).all()  # answered by the real Prometheus behind it
    assert set(server.seen) == {f"Bearer {TOKEN}"}
    assert instant_value(PrometheusSettings(url, retries=0, access=HttpAccess(ca_bundle=str(certificate[0]),
                                                                               bearer_token=TOKEN)), "vector(3)") == 3
    # A wrong token is refused, and not retried: Prometheus refused the query.
    server.seen.clear()
    with pytest.raises(PrometheusQueryError, match="401"):
        _fetch(url, HttpAccess(ca_bundle=str(certificate[0]), bearer_token="wrong"), retries=3)
    assert server.seen == ["Bearer wrong"]
    # Skipping verification is possible, but only when asked for.
    assert len(_fetch(url, HttpAccess(insecure_skip_verify=True, bearer_token=TOKEN))) == 10


def test_basic_auth_is_sent(front, certificate):
    server, url = front
    server.expected = "Basic c2hhcGVyOnB3"  # shaper:pw
    assert len(_fetch(url, HttpAccess(ca_bundle=str(certificate[0]), username="shaper", password="pw"))) == 10
    assert server.seen == ["Basic c2hhcGVyOnB3"]


def test_the_settings_layer_configures_the_metrics_source(front, certificate, monkeypatch):
    """SHAPER_PROMETHEUS_CA_BUNDLE and SHAPER_PROMETHEUS_BEARER_TOKEN reach the client that the
    history assets use (MetricsSourceResource), with nothing else passed."""
    from shaper_pipelines.resources.metrics_source import MetricsSourceResource
    from shaper_pipelines.settings import SettingsError, get_settings

    server, url = front
    monkeypatch.setenv("SHAPER_PROMETHEUS_CA_BUNDLE", str(certificate[0]))
    monkeypatch.setenv("SHAPER_PROMETHEUS_BEARER_TOKEN", TOKEN)
    access = HttpAccess.from_settings()
    assert access.ca_bundle == str(certificate[0]) and TOKEN not in repr(access)
    end = pd.Timestamp.now(tz="UTC").floor("min")
    values = MetricsSourceResource(prometheus_url=url, retries=0).fetch(
        "vector(5)", "t", "m", end - pd.Timedelta(minutes=5), end, pd.Timedelta(minutes=1))
    assert len(values) == 5 and set(server.seen) == {f"Bearer {TOKEN}"}
    monkeypatch.setenv("SHAPER_PROMETHEUS_USERNAME", "shaper")
    with pytest.raises(SettingsError, match="BEARER_TOKEN or SHAPER_PROMETHEUS_USERNAME"):
        get_settings()


@pytest.fixture(scope="module")
def secure_gateway(certificate):
    """A real Pushgateway serving TLS with basic auth (user shaper, password pw) from its own web config."""
    from shaper_pipelines_tests.services.pushgateway import start_pushgateway

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # bcrypt, which the web config wants; no extra package for it

        hashed = crypt.crypt("pw", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**4))
    cert, key = certificate
    context = ssl.create_default_context(cafile=str(cert))
    gateway = start_pushgateway(web_config={"tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
                                            "basic_auth_users": {"shaper": hashed}},
                                context=context, headers={"Authorization": "Basic c2hhcGVyOnB3"})
    yield gateway
    gateway.stop()


def test_the_push_verifies_tls_and_authenticates(secure_gateway, certificate, monkeypatch):
    gateway = secure_gateway
    metrics = [sample("shaper_export_timestamp_seconds", 1234)]
    # Verified by default: the self-signed gateway is refused at once, nothing pushed.
    with pytest.raises(PushError, match="TLS failed.*SHAPER_PUSHGATEWAY_CA_BUNDLE"):
        push(gateway.url, "shaper", metrics, timeout=5, retries=2, sleep=lambda _s: None,
             access=HttpAccess(username="shaper", password="pw"))
    # Trusted, but without credentials: refused with the gateway's 401.
    with pytest.raises(PushError, match="HTTP 401"):
        push(gateway.url, "shaper", metrics, timeout=5, access=HttpAccess(ca_bundle=str(certificate[0])))
    # From the settings layer, as prometheus_export's resource pushes.
    from shaper_pipelines.resources.pushgateway import PushgatewayResource

    monkeypatch.setenv("SHAPER_PUSHGATEWAY_CA_BUNDLE", str(certificate[0]))
    monkeypatch.setenv("SHAPER_PUSHGATEWAY_USERNAME", "shaper")
    monkeypatch.setenv("SHAPER_PUSHGATEWAY_PASSWORD", "pw")
    published = PushgatewayResource(url=gateway.url, timeout_seconds=5).publish(metrics)
    assert published.kind == "pushgateway" and published.where == f"{gateway.url}/metrics/job/shaper"
    assert any(line.startswith("shaper_export_timestamp_seconds{") and line.endswith(" 1234")
               for line in gateway.metrics().splitlines())
