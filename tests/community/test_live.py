"""The live stream (`/api/community-analytics/{id}/live/`) on two real API processes over HTTP: what one process
accepts reaches the subscribers of the other."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from service.core.settings import Settings
from service.live import push
from service.live.realtime import realtime_per_shard
from tests.conftest import create_database, drop_database, settings_for
from tests.processes import free_port, running, service_env, until
from tests.support import SINGLE, bearer

C = 4242
LIVE = f"/api/community-analytics/{C}/live/"
pytestmark = pytest.mark.slow


@dataclass
class Apis:
    """Two `analytics serve` processes on one database and one Redis."""

    first: str
    second: str
    settings: Settings
    redis_url: str


@pytest.fixture(scope="module")
def apis(
    postgres_admin_url: str, template_database: str, redis_server_url: str, tmp_path_factory: Any
) -> Iterator[Apis]:
    directory: Path = tmp_path_factory.mktemp("live")
    database_url = create_database(postgres_admin_url, template_database)
    redis_url = redis_server_url.rsplit("/", 1)[0] + "/12"  # a database no other test flushes meanwhile
    ports = free_port(), free_port()
    settings = settings_for(database_url, redis_url)
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    logs = [directory / f"api-{port}.log" for port in ports]
    envs = [service_env(database_url, redis_url, ANALYTICS_PORT=str(port), LIVE_HEARTBEAT="1") for port in ports]
    try:
        with running(["serve"], envs[0], logs[0]) as one, running(["serve"], envs[1], logs[1]) as two:
            for port, process, log in zip(ports, (one, two), logs, strict=True):
                until(lambda port=port: httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200, process, log)
            yield Apis(f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", settings, redis_url)
    finally:
        drop_database(postgres_admin_url, database_url)
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()


@dataclass
class Reader:
    """Reads one stream in a thread: each event (or heartbeat comment) with the moment it arrived."""

    url: str
    headers: dict[str, str]
    status: int = 0
    content_type: str = ""
    error: Exception | None = None
    received: queue.Queue[tuple[float, dict[str, str]]] = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _read(self) -> None:
        try:
            self._stream()
        except Exception as exc:
            self.error = exc

    def _stream(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            self.status, self.content_type = response.status_code, response.headers.get("content-type", "")
            self.opened.set()
            event: dict[str, str] = {}
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if not line:
                    if event:
                        self.received.put((time.monotonic(), event))
                    event = {}
                    continue
                name, _, value = line.partition(":")
                event[name or "comment"] = value.strip()

    def next(self, timeout: float = 10) -> tuple[float, dict[str, str]]:
        return self.received.get(timeout=timeout)

    def next_event(self, timeout: float = 10) -> tuple[float, dict[str, str]]:
        """The next `realtime` event, heartbeats skipped."""
        deadline = time.monotonic() + timeout
        while True:
            at, event = self.next(max(0.01, deadline - time.monotonic()))
            if event.get("event") == "realtime":
                return at, event

    def close(self) -> None:
        self.stop.set()


def figures(event: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(event["data"])
    return body


def test_a_change_through_another_process_arrives_within_two_seconds(apis: Apis) -> None:
    reader = Reader(apis.first + LIVE, bearer(apis.settings, "1", staff=True))
    try:
        assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
        _, first = reader.next_event()
        assert first["id"] and figures(first)["community_id"] == C
        before = figures(first)["online_members"]
        track = {"community_id": C, "user_id": 901, "activity_type": "view"}
        sent = time.monotonic()
        answer = httpx.post(apis.second + "/api/community-analytics/track/", json=track,
                            headers=bearer(apis.settings, "backend", service=True))  # fmt: skip
        assert answer.status_code == 202, answer.text
        at, changed = reader.next_event()
        assert figures(changed)["online_members"] == before + 1
        assert at - sent < 2.0, f"pushed {at - sent:.2f} s after the event was accepted"
        assert int(changed["id"]) > int(first["id"])
        # Quiet: a heartbeat comment (LIVE_HEARTBEAT is 1 s here), no event.
        _, beat = reader.next(timeout=5)
        assert beat == {"comment": "heartbeat"}
    finally:
        reader.close()


def test_a_reconnecting_client_gets_the_current_figures_at_once(apis: Apis) -> None:
    headers = {**bearer(apis.settings, "2", moderated=[C]), "Last-Event-ID": "1"}
    started = time.monotonic()
    reader = Reader(apis.second + LIVE, headers)
    try:
        at, event = reader.next_event()
        assert at - started < 2.0 and figures(event)["community_id"] == C
        assert event["retry"] == "3000"
    finally:
        reader.close()


def test_the_sixth_stream_of_one_principal_is_refused_across_processes(apis: Apis) -> None:
    headers = bearer(apis.settings, "3", staff=True)
    readers = [Reader((apis.first, apis.second)[i % 2] + LIVE, headers) for i in range(5)]
    try:
        assert [r.status for r in readers] == [200] * 5
        refused = httpx.get(apis.first + LIVE, headers=headers)
        assert refused.status_code == 429, refused.text
        assert "at most 5 live streams" in refused.json()["detail"]
        assert refused.headers["retry-after"]
        other = Reader(apis.second + LIVE, bearer(apis.settings, "4", staff=True))  # another principal: its own 5
        assert other.status == 200
        other.close()
    finally:
        for reader in readers:
            reader.close()
    # A closed stream gives its slot back (once the server notices the client left).
    deadline = time.monotonic() + 10
    while not _opens(apis, headers):
        assert time.monotonic() < deadline, "closed streams still count against the principal"
        time.sleep(0.2)


def _opens(apis: Apis, headers: dict[str, str]) -> bool:
    with httpx.Client(timeout=5) as client, client.stream("GET", apis.first + LIVE, headers=headers) as response:
        return response.status_code == 200


def test_who_may_watch(apis: Apis) -> None:
    member = httpx.get(apis.first + LIVE, headers=bearer(apis.settings, "5"))
    assert member.status_code == 403
    assert httpx.get(apis.first + LIVE).status_code == 401


def test_head_answers_the_headers_and_ends(apis: Apis) -> None:
    response = httpx.head(apis.first + LIVE, headers=bearer(apis.settings, "6", staff=True), timeout=5)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("text/event-stream")


def test_streams_end_when_the_api_stops(apis: Apis, tmp_path: Path) -> None:
    port = free_port()
    env = service_env(apis.settings.database_url or "", apis.redis_url, ANALYTICS_PORT=str(port))
    log = tmp_path / "api.log"
    with running(["serve"], env, log) as process:
        until(lambda: httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200, process, log)
        reader = Reader(f"http://127.0.0.1:{port}{LIVE}", bearer(apis.settings, "7", staff=True))
        reader.next_event()
        stopped = time.monotonic()
        process.terminate()
        assert process.wait(30) in (0, -signal.SIGTERM), log.read_text()  # uvicorn ends by the signal it got
        reader.thread.join(5)
        assert not reader.thread.is_alive(), "the stream is still open after the API stopped"
        assert reader.error is None, reader.error  # the answer was finished, not cut
        assert time.monotonic() - stopped < 5  # at once: not after the 10 s serve gives open connections
    assert "Traceback" not in log.read_text()


def test_a_tick_under_way_when_the_hub_ends_leaves_its_streams_ended(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ticker reads the figures (real Redis) but is held inside that read until the hub has ended: the None that
    # ended the subscription must not be replaced by the figures that arrive afterwards, or the stream never ends.
    reading, release = asyncio.Event(), asyncio.Event()

    async def held_read(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        await release.wait()
        return await realtime_per_shard(*args, **kwargs)

    monkeypatch.setattr(push, "realtime_per_shard", held_read)

    async def scenario() -> Any:
        client = redis.asyncio.Redis.from_url(redis_url)
        hub = push.LiveHub(client, SINGLE, tick=0.01)
        try:
            async with hub.watch(7, push.StreamSlot(client, "test")) as changes:
                await reading.wait()
                hub.end()
                release.set()
                await asyncio.sleep(0.05)  # the read completes; ticks would come every 10 ms
                return await asyncio.wait_for(changes.get(), 1)
        finally:
            await hub.close()
            await client.aclose()

    assert asyncio.run(scenario()) is None


def test_a_revoked_keys_stream_ends_at_the_next_heartbeat(apis: Apis) -> None:
    """Revoked through one process, the key's stream open on the other ends within a heartbeat (1 s here)."""
    staff = bearer(apis.settings, "1", staff=True)
    created = httpx.post(apis.first + "/api/keys/", json={"name": "wall screen", "scope": "read"}, headers=staff)
    assert created.status_code == 201, created.text
    reader = Reader(apis.second + LIVE, {"Authorization": f"Bearer {created.json()['key']}"})
    try:
        assert reader.status == 200
        reader.next_event()
        assert httpx.delete(f"{apis.first}/api/keys/{created.json()['id']}/", headers=staff).status_code == 204
        reader.thread.join(5)
        assert not reader.thread.is_alive() and reader.error is None, "the stream did not end"
    finally:
        reader.close()
