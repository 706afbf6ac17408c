"""The HTTP side: a threaded HTTP/1.1 server, the Emulator handle, the request log, admin API.

Per request: latency, rate limit, faults, then the pure Api. Nothing is printed per request.
"""

from __future__ import annotations

import email.utils
import http
import math
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from mts.emulator import bodies
from mts.emulator.api import KEY_PARAMS, Api, Response, Route, Settings, find_key, route
from mts.emulator.clock import Clock, parse_iso
from mts.emulator.faults import NAN_MARKER_JSON, FaultRule, FaultSet, mutate
from mts.emulator.ratelimit import RateLimiter
from mts.emulator.universe import Universe


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One /api/v3 request as the emulator saw it. Key values are never stored."""

    mono: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival
    method: str
    endpoint: str | None
    asset: str | None
    path: str  # without the query string
    params: dict[str, str]  # key parameters removed
    key_header: str | None  # which header/query parameter carried a key, if any
    status: int  # 0: the connection was reset without an answer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe in-memory list of RequestRecord."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, endpoint: str | None = None, asset: str | None = None) -> list[RequestRecord]:
        with self._lock:
            recs = list(self._records)
        return [
            r
            for r in recs
            if (endpoint is None or r.endpoint == endpoint) and (asset is None or r.asset == asset)
        ]

    def count(self, endpoint: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self._records
                if (endpoint is None or r.endpoint == endpoint)
                and (status is None or r.status == status)
            )

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


@dataclass
class _Outcome:
    status: int
    body: bytes
    content_type: str = bodies.JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


class Emulator:
    """A local CoinGecko /api/v3 on 127.0.0.1. Use start()/stop() or `with Emulator() as emu`."""

    def __init__(
        self,
        now: datetime | None = None,
        plan: str = "demo",
        rate_limit_per_min: int | None = None,
        rate_limit_style: str = "retry_after",
        latency_s: float = 0.0,
        history_days: int = 365,
        api_keys: set[str] | frozenset[str] | list[str] | None = None,
        assets: list[str] | None = None,
        listed_at: dict[str, datetime] | None = None,
        holes: Mapping[str, Iterable[datetime]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.clock = Clock(now)
        self.universe = Universe(self.clock, assets=assets, listed_at=listed_at, holes=holes)
        self.settings = Settings(
            plan=plan,
            rate_limit_per_min=rate_limit_per_min,
            rate_limit_style=rate_limit_style,
            latency_s=latency_s,
            history_days=history_days,
            api_keys=frozenset(api_keys) if api_keys is not None else None,
        )
        self.api = Api(self.universe, self.settings)
        self.faults = FaultSet()
        self.limiter = RateLimiter(rate_limit_per_min)
        self.log = RequestLog()
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle -----

    def start(self) -> None:
        """Bind and serve in a background daemon thread."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server = _Server((self._host, self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="coingecko-emulator",
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and drop open client connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_all_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/api/v3"

    # ----- faults, log, settings -----

    def add_fault(self, rule: FaultRule) -> None:
        self.faults.add(rule)

    def clear_faults(self) -> None:
        self.faults.clear()

    def requests(
        self, endpoint: str | None = None, asset: str | None = None
    ) -> list[RequestRecord]:
        return self.log.records(endpoint, asset)

    def count(self, endpoint: str | None = None, status: int | None = None) -> int:
        return self.log.count(endpoint, status)

    def reset_log(self) -> None:
        self.log.clear()

    def configure(self, **changes: Any) -> None:
        """Change plan, rate_limit_per_min, rate_limit_style, latency_s or history_days live."""
        allowed = {"plan", "rate_limit_per_min", "rate_limit_style", "latency_s", "history_days"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot configure {sorted(unknown)}; allowed: {sorted(allowed)}")
        trial = Settings(**{**asdict(self.settings), **changes})  # validates
        for name in changes:
            setattr(self.settings, name, getattr(trial, name))
        if "rate_limit_per_min" in changes:
            self.limiter.set_limit(self.settings.rate_limit_per_min)

    def describe(self) -> str:
        s = self.settings
        limit = (
            f"rate limit {s.rate_limit_per_min}/min ({s.rate_limit_style})"
            if s.rate_limit_per_min
            else "no rate limit"
        )
        clock = f"clock {self.clock.now().isoformat()}" + (" frozen" if self.clock.frozen else "")
        return f"plan {s.plan}, {limit}, latency {s.latency_s:g} s, {clock}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    emulator: Emulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the crash tests do it hundreds of times) resets the
        # connection while the request line is read: routine, not a traceback on stderr.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # nothing per request: the request log is the record

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        emu = self.server.emulator
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        try:
            if url.path.startswith("/_emulator/") or url.path == "/_emulator":
                out = _admin(emu, self.command, url.path, payload)
                self._send(out)
            else:
                self._api(emu, url.path, url.query)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout): nothing to say
        except Exception:  # noqa: BLE001 - a bug must answer 500, not hang the client
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            try:
                self._send(_Outcome(500, orjson.dumps(bodies.INTERNAL_ERROR)))
            except OSError:
                pass

    def _api(self, emu: Emulator, path: str, query: str) -> None:
        mono, wall = time.monotonic(), time.time()
        params = dict(parse_qsl(query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        key = find_key(headers, params)
        rt = route(path) if self.command == "GET" else Route(None)
        safe_params = {k: v for k, v in params.items() if k not in KEY_PARAMS}

        def record(status: int) -> None:
            emu.log.append(
                RequestRecord(
                    mono,
                    wall,
                    self.command,
                    rt.endpoint,
                    rt.asset,
                    path,
                    safe_params,
                    key.source,
                    status,
                )
            )

        settings = emu.settings
        if settings.latency_s > 0:
            time.sleep(settings.latency_s)
        wait, remaining = emu.limiter.acquire()
        if wait is not None:
            out = _rate_limited(settings.rate_limit_style, settings.rate_limit_per_min or 0, wait)
            record(out.status)
            self._send(out)
            return
        rule = emu.faults.match(rt.endpoint, rt.asset)
        if rule is not None and rule.kind == "status":
            status, body, ctype, extra = rule.status_response()
            record(status)
            self._send(_Outcome(status, body, ctype, extra))
            return
        if rule is not None and rule.kind == "reset":
            record(0)
            self._reset()
            return
        if rule is not None and rule.kind == "delay":
            time.sleep(rule.delay_s or 0)
        resp = emu.api.handle(rt, params, key, emu.clock.now_ms())
        mutation = rule.mutation if rule is not None and rule.kind == "bad_data" else None
        out = _serialise(resp, mutation)
        record(out.status)
        if rule is not None and rule.kind == "truncate":
            self._send(out, truncate=True)
        else:
            self._send(out)

    def _send(self, out: _Outcome, truncate: bool = False) -> None:
        """Write status line, headers and body in one send (no Nagle/delayed-ACK stalls)."""
        try:
            reason = http.HTTPStatus(out.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [
            f"HTTP/1.1 {out.status} {reason}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Type: {out.content_type}",
            f"Content-Length: {len(out.body)}",
            "Server: cloudflare",
        ]
        lines += [f"{k}: {v}" for k, v in out.headers.items()]
        if truncate:
            self.close_connection = True
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = out.body[: len(out.body) // 2] if truncate else out.body
        self.wfile.write(head + body)

    def _reset(self) -> None:
        """Drop the connection with a TCP RST and no answer."""
        self.close_connection = True
        conn = self.connection
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop the makefile reference so close() really closes
        conn.close()


def _serialise(resp: Response, mutation: str | None) -> _Outcome:
    if resp.body is not None:
        return _Outcome(resp.status, resp.body, resp.content_type, resp.headers)
    payload = resp.payload
    if mutation is not None and resp.status == 200 and resp.kind is not None:
        payload = mutate(resp.kind, payload, mutation)
    body = orjson.dumps(payload)
    if mutation == "nan_price":
        body = body.replace(NAN_MARKER_JSON, b"NaN")
    return _Outcome(resp.status, body, resp.content_type, resp.headers)


def _rate_limited(style: str, limit: int, wait_s: float) -> _Outcome:
    if style == "cloudflare":
        return _Outcome(429, bodies.CLOUDFLARE_1015, bodies.TEXT_TYPE)
    body = orjson.dumps(bodies.RATE_LIMIT)
    if style == "reset":
        reset_at = datetime.now(UTC) + timedelta(seconds=math.ceil(wait_s))
        headers = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": reset_at.strftime("%Y-%m-%d %H:%M:%S +0000"),
        }
    else:
        headers = {"Retry-After": str(max(1, math.ceil(wait_s)))}
    return _Outcome(429, body, bodies.JSON_TYPE, headers)


def _admin(emu: Emulator, method: str, path: str, payload: bytes) -> _Outcome:
    """The /_emulator/ control API, so a benchmark can drive an emulator in another process."""
    name = path.removeprefix("/_emulator").strip("/")
    try:
        data = orjson.loads(payload) if payload.strip() else None
        result = _admin_action(emu, method, name, data)
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
        return _Outcome(400, orjson.dumps({"error": str(exc)}))
    if result is None:
        return _Outcome(404, orjson.dumps({"error": f"no admin endpoint {method} {path}"}))
    return _Outcome(200, orjson.dumps(result))


def _admin_action(emu: Emulator, method: str, name: str, data: Any) -> Any:
    if (method, name) == ("GET", "requests"):
        return [r.to_dict() for r in emu.requests()]
    if (method, name) == ("POST", "reset"):
        emu.reset_log()
        emu.limiter.reset()
        return {"ok": True}
    if name == "clock" and method in ("GET", "POST"):
        data = data or {}
        if "now" in data:
            emu.clock.set(parse_iso(str(data["now"])))
        if "advance_s" in data:
            emu.clock.advance(timedelta(seconds=float(data["advance_s"])))
        if data.get("freeze"):
            emu.clock.freeze()
        if data.get("run"):
            emu.clock.run()
        return {"now": emu.clock.now().isoformat(), "frozen": emu.clock.frozen}
    if name == "faults":
        if method == "GET":
            return emu.faults.rules()
        if method == "POST":
            if not isinstance(data, list):
                raise ValueError("POST /_emulator/faults takes a JSON list of rules")
            emu.faults.replace([FaultRule.from_dict(d) for d in data])
            return emu.faults.rules()
        if method == "DELETE":
            emu.clear_faults()
            return []
    if name == "config" and method in ("GET", "POST"):
        if method == "POST":
            emu.configure(**(data or {}))
        s = asdict(emu.settings)
        s.pop("api_keys")
        return s
    return None
