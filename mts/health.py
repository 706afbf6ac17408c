"""`mts serve`: GET /health (JSON, as SPEC describes) and GET /metrics (Prometheus text).

The bodies are built by pure functions (`assess`, `metrics.render_metrics`) from what is on disk;
the server only routes. Nothing is logged per request, nothing but GET on those two paths.

How the status is decided (the thresholds an operator wires alerts to):

- an asset is fresh while its newest row is at most `factor` (default 2) of its interval old:
  the hourly series, or the asset's candles when it has no hourly series;
- the assets judged are the last run's universe (so assets that left the top N stop counting),
  or every stored asset when no run is recorded;
- unhealthy (503): no data at all, the last run failed (exit 1), or fewer than half of the
  assets are fresh;
- degraded (200): some asset is stale or missing, or the last run was partial, interrupted or
  is not recorded;
- healthy (200): otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import orjson

from .errors import MtsError
from .intervals import INTERVAL_MS
from .inventory import SeriesInfo, saved_last_run, scan
from .layout import Layout

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_FACTOR = 2.0
PATHS = ("/health", "/metrics")

Now = Callable[[], datetime]


def _system_now() -> datetime:
    return datetime.now(UTC)


# --- the /health body (pure) --------------------------------------------------------------------


def _primary(series: list[SeriesInfo]) -> SeriesInfo:
    """The series that says whether an asset is up to date: hourly prices, else candles."""
    for s in series:
        if s.dataset == "market_chart":
            return s
    return max(
        series, key=lambda s: (s.last is not None, s.last or datetime.min.replace(tzinfo=UTC))
    )


def _grade(fresh: int, total: int) -> str:
    if total and fresh == total:
        return "healthy"
    if total and fresh * 2 >= total:
        return "degraded"
    return "unhealthy"


def assess(
    series: list[SeriesInfo], last_run: dict | None, now: datetime, factor: float = DEFAULT_FACTOR
) -> tuple[int, dict]:
    """(HTTP status, /health document) for the stored `series` and `last_run` at `now`. Pure."""
    by_asset: dict[str, list[SeriesInfo]] = {}
    for s in series:
        if s.dataset in ("market_chart", "ohlc"):
            by_asset.setdefault(s.asset_id, []).append(s)
    universe = last_run.get("universe") if last_run else None
    judged = list(universe) if isinstance(universe, list) and universe else sorted(by_asset)

    assets: dict[str, dict] = {}
    for asset in judged:
        stored = by_asset.get(asset)
        if not stored:
            assets[asset] = {
                "status": "missing",
                "age_hours": None,
                "last_update": None,
                "records_count": 0,
            }
            continue
        p = _primary(stored)
        age = p.age_hours(now)
        fresh = age is not None and age * 3_600_000 <= factor * INTERVAL_MS.get(
            p.interval, 3_600_000
        )
        assets[asset] = {
            "status": "fresh" if fresh else "stale",
            "age_hours": round(age, 3) if age is not None else None,
            "last_update": p.last.isoformat() if p.last else None,
            "records_count": sum(s.rows for s in stored),
        }
    fresh_count = sum(a["status"] == "fresh" for a in assets.values())
    total = len(assets)
    freshness = {
        "overall_status": _grade(fresh_count, total),
        "fresh_count": fresh_count,
        "total_count": total,
        "assets": assets,
    }

    run = _run_component(last_run)
    if total == 0:
        status, message = "unhealthy", "no data stored yet: run `mts collect`"
    else:
        status = freshness["overall_status"]
        if run["status"] == "unhealthy" or (run["status"] == "degraded" and status == "healthy"):
            status = run["status"]
        stale = [a for a, v in assets.items() if v["status"] != "fresh"]
        message = f"{fresh_count}/{total} assets fresh"
        if stale:
            message += f"; stale or missing: {', '.join(stale[:5])}{' …' if len(stale) > 5 else ''}"
        message += f"; {run['message']}"
    doc = {
        "status": status,
        "healthy": status != "unhealthy",
        "message": message,
        "checked_at": now.isoformat(),
        "components": {"data_freshness": freshness, "last_run": run},
    }
    return (503 if status == "unhealthy" else 200), doc


def _run_component(last_run: dict | None) -> dict:
    if not last_run:
        return {"status": "degraded", "outcome": None, "message": "no run recorded"}
    code = last_run.get("exit_code")
    status = "healthy" if code == 0 else "unhealthy" if code == 1 else "degraded"
    info = {k: v for k, v in last_run.items() if k != "universe"}
    outcome, finished = last_run.get("outcome", "unknown"), last_run.get("finished_at")
    message = f"last run {outcome} (exit {code}) at {finished}"
    return {"status": status, **info, "message": message}


# --- what is on disk, re-read at most every `cache_s` seconds -----------------------------------


class DiskView:
    """The inventory and last run of a data folder, cached briefly: a scrape every few seconds
    must not re-read hundreds of files each time."""

    def __init__(self, layout: Layout, cache_s: float = 5.0):
        self.layout = layout
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._at = -1e18
        self._value: tuple[list[SeriesInfo], dict | None] = ([], None)

    def get(self) -> tuple[list[SeriesInfo], dict | None]:
        with self._lock:
            if time.monotonic() - self._at >= self.cache_s:
                self._value = (scan(self.layout), saved_last_run(self.layout))
                self._at = time.monotonic()
            return self._value


def respond(view: DiskView, path: str, now: datetime, factor: float) -> tuple[int, str, bytes]:
    """(status, content type, body) for GET `path`."""
    if path not in PATHS:
        return 404, "text/plain; charset=utf-8", b"not found: try /health or /metrics\n"
    series, last_run = view.get()
    code, doc = assess(series, last_run, now, factor)
    if path == "/health":
        return code, "application/json", orjson.dumps(doc) + b"\n"
    from .metrics import CONTENT_TYPE, render_metrics

    return 200, CONTENT_TYPE, render_metrics(last_run, series, now, doc)


# --- the server ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = "mts"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature; nothing per request
        pass

    def do_GET(self) -> None:
        srv: _Server = self.server  # type: ignore[assignment]
        path = urlsplit(self.path).path
        try:
            code, ctype, body = respond(srv.view, path, srv.now(), srv.factor)
        except Exception as exc:  # noqa: BLE001 - a broken folder is an unhealthy answer, not a dead server
            code, ctype = 503, "application/json"
            body = (
                orjson.dumps(
                    {
                        "status": "unhealthy",
                        "healthy": False,
                        "message": f"{type(exc).__name__}: {exc}",
                    }
                )
                + b"\n"
            )
        self._send(code, ctype, body)

    def _refuse(self) -> None:
        path = urlsplit(self.path).path
        if path in PATHS:
            self._send(405, "text/plain; charset=utf-8", b"only GET\n", {"Allow": "GET"})
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def _send(
        self, code: int, ctype: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    view: DiskView
    now: Now
    factor: float


class HealthServer:
    """/health and /metrics of a data folder on host:port (port 0: any free port).
    `with HealthServer(layout, now=...) as srv: srv.url`"""

    def __init__(
        self,
        layout: Layout,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        now: Now = _system_now,
        factor: float = DEFAULT_FACTOR,
        cache_s: float = 5.0,
    ):
        if factor <= 0:
            raise MtsError(f"the freshness factor must be positive, not {factor}")
        try:
            self._server = _Server((host, port), _Handler)
        except OSError as exc:
            raise MtsError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
            ) from exc
        self._server.view = DiskView(layout, cache_s)
        self._server.now = now
        self._server.factor = factor
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HealthServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="mts-health",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(
    layout: Layout,
    *,
    host: str,
    port: int,
    now: Now,
    factor: float,
    stop: threading.Event,
    on_ready: Callable[[HealthServer], None] | None = None,
) -> None:
    """Serve until `stop` is set (the CLI sets it on SIGTERM/SIGINT)."""
    with HealthServer(layout, host=host, port=port, now=now, factor=factor) as srv:
        if on_ready:
            on_ready(srv)
        while not stop.wait(0.5):
            pass
