"""The demo's HTTP side: a service token, and batched requests retried on 429/503 and broken connections."""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

import msgspec

from service.auth.tokens import issue_token
from service.core.settings import ConfigError, Settings
from service.tools.demo.world import Kind

# Where each kind goes; the first three take lists (TRACK_MAX_BATCH items), the others one object per request.
PATHS: dict[Kind, str] = {
    "activity": "/api/community-analytics/track/batch/",
    "geo": "/api/geo-analytics/track/batch/",
    "platform": "/api/events/",
    "error": "/api/errors/",
    "metric": "/api/metrics/",
}
BATCHED: frozenset[Kind] = frozenset({"activity", "geo", "platform"})
REQUEST_DEADLINE = 120.0  # seconds one request may spend on retries (429, 503, broken connections)
CHECK_DEADLINE = 5.0  # seconds the first look at the API may take before the demo gives up
TOKEN_LIFETIME = 3600.0


class DemoError(Exception):
    """The demo cannot go on (the API refused something or is unreachable); the message says what."""


# --- HTTP ---------------------------------------------------------------------------------------------------


class Api:
    """The API over HTTP/1.1 keep-alive connections (one per thread), with a service token minted as needed."""

    def __init__(self, url: str, settings: Settings, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--url: expected http://host:port or https://host:port, got {url!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.settings, self.timeout = settings, timeout
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []  # every thread's, closed by close()
        self._token_lock = threading.Lock()
        self._token: tuple[str, float] | None = None

    def token(self) -> str:
        """A service token (staff: it also queues tasks), renewed when half its life is gone."""
        with self._token_lock:
            if self._token is None or time.monotonic() - self._token[1] > TOKEN_LIFETIME / 2:
                token = issue_token(self.settings, "demo", service=True, staff=True, lifetime=TOKEN_LIFETIME)
                self._token = (token, time.monotonic())
            return self._token[0]

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
            with self._token_lock:
                self._opened.append(conn)
        return conn

    def close(self) -> None:
        """Close the connections of every thread (call when no request is under way)."""
        with self._token_lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        deadline: float | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; 429/503 are retried after Retry-After and broken connections after a backoff,
        for up to `deadline` seconds (REQUEST_DEADLINE). Returns the status and body of the final answer."""
        deadline = time.monotonic() + (REQUEST_DEADLINE if deadline is None else deadline)
        delay = 0.25
        while True:
            sent = dict(headers or {})
            if body is not None:
                sent["Content-Type"] = "application/json"
            if auth:
                sent["Authorization"] = f"Bearer {self.token()}"
            try:
                conn = self._connection()
                conn.request(method, self.prefix + path, body=body, headers=sent)
                answer = conn.getresponse()
                data = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                if time.monotonic() + delay > deadline:
                    raise DemoError(f"cannot reach the API at {self.describe()}: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
                continue
            if answer.getheader("Connection", "").lower() == "close":
                self._drop_connection()
            if answer.status in (429, 503):
                pause = _retry_after(answer.getheader("Retry-After"))
                if time.monotonic() + pause <= deadline:
                    time.sleep(pause)
                    continue
            return answer.status, data

    def check(self, seconds: float = CHECK_DEADLINE) -> None:
        """DemoError at once (within `seconds`) when the API does not answer `/health` at the URL."""
        try:
            status, _ = self.request("GET", "/health", auth=False, deadline=seconds)
        except DemoError:
            raise DemoError(
                f"cannot reach the API at {self.describe()} (is it running? `make dev` starts it)"
            ) from None
        if status != 200:
            raise DemoError(f"{self.describe()}/health answered {status}: is this the analytics API?")

    def describe(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}{self.prefix}"


def _retry_after(value: str | None) -> float:
    try:
        return min(30.0, max(0.1, float(value or 1)))
    except ValueError:
        return 1.0


def refusal(status: int, data: bytes) -> str:
    """The API's error answer in one line: its detail and the first field errors."""
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return f"HTTP {status}: {data[:200].decode(errors='replace')}"
    if not isinstance(body, dict):
        return f"HTTP {status}"
    errors = body.get("errors") or []
    fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors[:3] if isinstance(e, dict))
    return f"HTTP {status}: {body.get('detail', '')}" + (f" ({fields})" if fields else "")


class Sender:
    """Buffers items per endpoint and sends them from a thread pool, a bounded number in flight."""

    def __init__(self, api: Api, batch_size: int, concurrency: int) -> None:
        self.api, self.batch_size = api, batch_size
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="demo-send")
        self._inflight: set[Future[None]] = set()
        self._buffers: dict[Kind, list[dict[str, Any]]] = {kind: [] for kind in BATCHED}
        self._lock = threading.Lock()
        self.sent: Counter[str] = Counter()  # by kind, plus "blocked"
        self.countries: set[str] = set()

    def add(self, kind: Kind, item: dict[str, Any]) -> None:
        if kind in BATCHED:
            buffer = self._buffers[kind]
            buffer.append(item)
            if len(buffer) >= self.batch_size:
                self._submit(kind, buffer[:])
                buffer.clear()
        else:
            self._submit(kind, [item])

    def flush(self) -> None:
        """Send what the buffers hold, and wait for every request in flight."""
        for kind, buffer in self._buffers.items():
            if buffer:
                self._submit(kind, buffer[:])
                buffer.clear()
        done, _ = wait(self._inflight)
        self._inflight.clear()
        for future in done:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, kind: Kind, items: list[dict[str, Any]]) -> None:
        while len(self._inflight) >= 2 * self.concurrency:
            done, self._inflight = wait(self._inflight, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # re-raises the worker's DemoError here, in the generating thread
        if kind in BATCHED:
            # Ids fixed before the first try: a retried batch is stored once.
            for item in items:
                item["event_id"] = str(uuid.uuid4())
            body = msgspec.json.encode(items)
        else:
            body = msgspec.json.encode(items[0])
        self._inflight.add(self._pool.submit(self._send, kind, items, body))

    def _send(self, kind: Kind, items: list[dict[str, Any]], body: bytes) -> None:
        status, data = self.api.request("POST", PATHS[kind], body)
        if status == 404 and kind not in BATCHED:
            raise DemoError(f"the API at {self.api.describe()} has no POST {PATHS[kind]} ({refusal(status, data)})")
        if not 200 <= status < 300:
            raise DemoError(f"POST {PATHS[kind]} was refused: {refusal(status, data)}")
        if kind in BATCHED:
            answer = msgspec.json.decode(data)
            if answer.get("rejected"):
                rejected = [r for r in answer.get("results", []) if r.get("status") == "rejected"]
                first = rejected[0].get("errors", [{}])[0] if rejected else {}
                raise DemoError(
                    f"POST {PATHS[kind]}: {answer['rejected']} of {len(items)} events refused, the first: "
                    f"{first.get('field')}: {first.get('message')} (do the demo and the API share TRACK_MAX_AGE?)"
                )
        with self._lock:
            self.sent[kind] += len(items)
            if kind == "geo":
                self.sent["blocked"] += sum(1 for i in items if i["access_result"] == "blocked")
                self.countries.update(i["location"]["country_code"] for i in items)


def sent_summary(sent: Counter[str]) -> str:
    return f"{sent['activity'] + sent['platform']:,} events, {sent['geo']:,} geo decisions"
