"""Proxy settings come from the environment as with any HTTP tool: HTTP(S)_PROXY is used,
NO_PROXY bypasses it. Checked with a real forwarding proxy on 127.0.0.1."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import run_cli


class _Forward(BaseHTTPRequestHandler):
    seen: list[str] = []
    _direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(self.path)  # absolute-form target: what a client sends a proxy
        with self._direct.open(self.path, timeout=30) as up:
            body = up.read()
            self.send_response(up.status)
            self.send_header("Content-Type", up.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    _Forward.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Forward)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Forward.seen
    finally:
        server.shutdown()
        server.server_close()


def test_calls_go_through_the_proxy_named_in_the_environment(env, emulator, proxy):
    url, seen = proxy
    proc = run_cli(["collect", "--top", "2", "--days", "1"], {**env, "HTTP_PROXY": url, "http_proxy": url})
    assert proc.returncode == 0, proc.stderr
    assert len(seen) == len(emulator.requests()) > 0
    assert all(p.startswith(emulator.base_url) for p in seen)


def test_no_proxy_bypasses_it(env, emulator, proxy):
    url, seen = proxy
    proc = run_cli(
        ["collect", "--top", "2", "--days", "1"],
        {**env, "HTTP_PROXY": url, "http_proxy": url, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert seen == [] and len(emulator.requests()) > 0


_IP10, _IP11 = "https://10.1.2.3/api/v3", "https://11.1.2.3/api/v3"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ({"https_proxy": "http://lower:1"}, "http://lower:1"),
        ({"HTTP_PROXY": "http://p:3128"}, None),  # the API is https: http_proxy does not apply
        ({"ALL_PROXY": "http://all:1"}, "http://all:1"),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "coingecko.com"}, None),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "example.org"}, "http://p:3128"),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".api.coingecko.com"}, None),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, None),
        ({"HTTPS_PROXY": "http://p:3128", "COINGECKO_BASE_URL": _IP10, "NO_PROXY": "10.0.0.0/8"}, None),
        ({"HTTPS_PROXY": "http://p:3128", "COINGECKO_BASE_URL": _IP11, "NO_PROXY": "10.0.0.0/8"}, "http://p:3128"),
    ],
)
def test_the_proxy_is_resolved_once_from_the_environment(env, expected):
    from mts.settings import resolve_settings

    assert resolve_settings(env).proxy == expected
    assert "p:3128" not in repr(resolve_settings(env))
