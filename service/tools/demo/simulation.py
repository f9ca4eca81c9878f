"""The world's activity over time: sessions, geo decisions, errors and system metric samples as the API's
request bodies (`Simulator`, `history`)."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from service.tools.demo.world import (
    DEVICES,
    DIURNAL,
    SECTIONS,
    VPN_EXITS,
    Community,
    Kind,
    Place,
    Restriction,
    User,
    World,
    build_world,
    poisson,
)

METRIC_SLOT = timedelta(minutes=15)  # as the update_system_metrics task samples
LANDED = timedelta(minutes=40)  # a traveler's first look at its communities after the trip begins


# --- Events -------------------------------------------------------------------------------------------------

Event = tuple[datetime, int, Kind, dict[str, Any]]  # (when, tie-breaker, kind, request item)

ERRORS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("error", "TimeoutError: feed service did not answer within {ms} ms", "GET", "/communities/{c}/feed",
     'File "feed/views.py", line 88, in load_feed\n    items = client.fetch(community_id, timeout=5)\n'
     'File "feed/client.py", line 41, in fetch\n    raise TimeoutError(f"... within {ms} ms")'),
    ("error", "KeyError: 'avatar_url' while rendering member {u}", "GET", "/communities/{c}/members",
     'File "members/serializers.py", line 57, in to_representation\n    data["avatar"] = profile["avatar_url"]'),
    ("warning", "Slow query: member list of community {c} took {ms} ms", "GET", "/communities/{c}/members", None),
    ("critical", "OperationalError: connection pool exhausted (50 of 50 connections in use)", "POST",
     "/communities/{c}/posts",
     'File "posts/views.py", line 132, in create_post\n    with pool.connection() as conn:\n'
     'File "db/pool.py", line 19, in connection\n    raise OperationalError("connection pool exhausted")'),
    ("error", "TypeError: Cannot read properties of undefined (reading 'id')", "GET", "/communities/{c}",
     "at renderPost (https://static.community.example/app.js:1:48213)\n"
     "at Array.map (<anonymous>)\nat Feed (https://static.community.example/app.js:1:50122)"),
    ("warning", "Upload of {kb} KB refused: larger than the 10240 KB limit", "POST", "/communities/{c}/posts", None),
    ("info", "Rate limit reached for user {u} on /api/messages", "POST", "/communities/{c}/chat", None),
)  # fmt: skip
_ERROR_WEIGHTS = (5, 3, 6, 1, 4, 2, 3)
# The platform's own jobs fail now and then whatever the traffic: errors without a user.
BACKGROUND_ERRORS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("error", "Webhook delivery to hooks.partner{n}.example failed: HTTP 502", "POST", "/internal/webhooks/deliver"),
    ("warning", "Daily digest e-mail job took {n} s (limit 60 s)", None, None),
    ("error", "ConnectionResetError: search index node {n} closed the connection", "POST", "/internal/search/index"),
)
BACKGROUND_ERRORS_PER_HOUR = 0.8
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "CommunityApp/4.12.0 (Android 15; Pixel 8)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605",
)


class Simulator:
    """Turns the world into events over time: `advance(start, end)` starts what begins in that interval,
    `due(until)` hands out the events that have happened by then, in time order."""

    def __init__(self, world: World, rng: random.Random, history_start: datetime, metrics: bool = True) -> None:
        self.world, self.rng = world, rng
        self.history_start = history_start
        self.metrics = metrics  # system metrics samples (the history only: live, the worker samples real ones)
        self.scale = 1.0  # multiplies the session rates (live mode speeds them up so the realtime figures move)
        self._queue: list[Event] = []
        self._seq = itertools.count()
        self._visited: set[tuple[int, int]] = set()  # (user, community): a new member joins on the first visit
        self._registered: set[int] = set()
        self._peak = sum(c.rate for c in world.communities) / 24 * max(DIURNAL) or 1.0
        # Visits due at set times, latest first: a new member joins its communities when it arrives; a traveler
        # looks in on each of them soon after landing abroad.
        self._visits: list[tuple[datetime, int, int]] = []
        for community in world.communities:
            for user in (world.users[user_id] for user_id in community.members):
                if user.arrives is not None:
                    self._visits.append((user.arrives, user.id, community.id))
                if user.trip is not None:
                    self._visits.append((user.trip.start + LANDED, user.id, community.id))
        self._visits.sort(reverse=True)
        self._by_id = {community.id: community for community in world.communities}

    def _add(self, when: datetime, kind: Kind, item: dict[str, Any]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), kind, item))

    def due(self, until: datetime) -> list[Event]:
        """The queued events that happen before `until`, earliest first."""
        out: list[Event] = []
        while self._queue and self._queue[0][0] < until:
            out.append(heapq.heappop(self._queue))
        return out

    def advance(self, start: datetime, end: datetime) -> None:
        """Start the sessions (and errors, metric samples) that begin in [start, end)."""
        hours = (end - start).total_seconds() / 3600
        if hours <= 0:
            return
        rng = self.rng
        while self._visits and self._visits[-1][0] < end:
            when, user_id, community_id = self._visits.pop()
            if when >= start:
                self._session(self.world.users[user_id], self._by_id[community_id], when)
        for community in self.world.communities:
            expected = community.sessions_per_hour(start) * hours * self.scale
            for _ in range(poisson(rng, expected)):
                user = self.world.users[community.pick_member(rng)]
                self._session(user, community, start + (end - start) * rng.random())
            for _ in range(poisson(rng, expected * 0.15)):  # visitors who are not signed in
                when = start + (end - start) * rng.random()
                section = rng.choice(("about", "feed", "events"))
                self._activity(when, community, None, "view", None, {"section": section, "duration": 20.0})
        for _ in range(poisson(rng, BACKGROUND_ERRORS_PER_HOUR * hours)):
            self._background_error(start + (end - start) * rng.random())
        if self.metrics:
            slot = _ceil(start, METRIC_SLOT)
            while slot < end:
                self._metric_samples(slot)
                slot += METRIC_SLOT

    def _activity(
        self,
        when: datetime,
        community: Community,
        user: int | None,
        kind: str,
        session: str | None,
        metadata: dict[str, Any],
    ) -> None:
        item: dict[str, Any] = {"community_id": community.id, "activity_type": kind, "timestamp": when}
        if user is not None:
            item["user_id"] = user
        if session is not None:
            item["session_id"] = session
        if metadata:
            item["metadata"] = metadata
        self._add(when, "activity", item)

    def _platform(self, when: datetime, user: User, kind: str, community: Community | None = None) -> None:
        item: dict[str, Any] = {"activity_type": kind, "user_id": user.id, "timestamp": when}
        if community is not None:
            item["community_id"] = community.id
        self._add(when, "platform", item)

    def _geo(self, when: datetime, community: Community, user: User, place: Place, blocked: Restriction | None) -> None:
        item: dict[str, Any] = {
            "community_id": community.id,
            "user_id": user.id,
            "access_result": "blocked" if blocked else "allowed",
            "location": {"country": place.country, "country_code": place.code, "region": place.region,
                         "city": place.city},
            "is_traveler": place.code != user.home.code,
            "timestamp": when,
        }  # fmt: skip
        if blocked:
            item["restriction_scope"] = blocked.scope
        self._add(when, "geo", item)

    def _session(self, user: User, community: Community, start: datetime) -> None:
        rng = self.rng
        t = start
        place = user.place_at(t)
        refused = community.restriction_for(place)
        self._geo(t, community, user, place, refused)
        if refused is not None:
            if not user.vpn:
                # Some try again a few times before giving up.
                for _ in range(poisson(rng, 0.7)):
                    t += timedelta(seconds=rng.uniform(20, 300))
                    self._geo(t, community, user, place, refused)
                return
            # Back a few minutes later through a VPN: allowed, and flagged as a restriction bypass.
            t += timedelta(seconds=rng.uniform(60, 600))
            place = rng.choice(VPN_EXITS)
            if community.restriction_for(place) is not None:
                return
            self._geo(t, community, user, place, None)
        first_visit = (user.id, community.id) not in self._visited
        self._visited.add((user.id, community.id))
        if user.new and user.id not in self._registered:
            self._registered.add(user.id)
            self._platform(t, user, "register")
        session = f"demo-{user.id}-{rng.getrandbits(40):010x}"
        device = rng.choice(DEVICES)
        self._activity(t, community, user.id, "session_start", session, {"device": device})
        self._platform(t, user, "page_view", community)  # the community's page, as the platform's web app logs it
        if first_visit and user.new:
            t += timedelta(seconds=rng.uniform(5, 60))
            self._activity(t, community, user.id, "join", session, {})
        begin = t
        for _ in range(1 + poisson(rng, 4 * user.engagement)):
            t += timedelta(seconds=rng.uniform(2, 40))
            section = rng.choice(SECTIONS)
            duration = round(min(900.0, 3 + rng.expovariate(1 / 40)), 1)
            self._activity(t, community, user.id, "view", session, {"section": section, "duration": duration})
            if section in ("feed", "post") and rng.random() < 0.6:  # a post opened from the feed or the post page
                post = community.id * 100_000 + rng.randrange(5_000)
                self._activity(t, community, user.id, "content_view", session, {"section": section, "post": post})
            t += timedelta(seconds=duration)
            roll = rng.random()
            if section == "chat" and roll < 0.5:
                self._activity(t, community, user.id, "message", session, {"section": "chat"})
            elif roll < 0.25:
                self._activity(t, community, user.id, "like", session, {"section": section})
            elif roll < 0.31:
                self._activity(t, community, user.id, "comment", session, {"section": section})
            elif roll < 0.34:
                self._activity(t, community, user.id, "post", session, {"section": "feed"})
            elif roll < 0.36:
                self._activity(t, community, user.id, "share", session, {"section": section})
        if rng.random() < 0.35:
            self._platform(t, user, "recommendation_shown", community)
            if rng.random() < 0.3:
                self._platform(t + timedelta(seconds=rng.uniform(1, 20)), user, "recommendation_clicked", community)
        if rng.random() < 0.04:
            self._platform(t, user, "follow")
        if rng.random() < 0.01:
            self._error(t, user, community)
        t += timedelta(seconds=rng.uniform(1, 30))
        if rng.random() < 0.003:
            self._activity(t, community, user.id, "leave", session, {})
        length = round((t - begin).total_seconds(), 1)
        self._activity(t, community, user.id, "session_end", session, {"device": device, "duration": length})

    def _error(self, when: datetime, user: User, community: Community) -> None:
        rng = self.rng
        level, message, method, path, stack = rng.choices(ERRORS, _ERROR_WEIGHTS)[0]
        values = {"ms": rng.randint(2000, 9000), "u": user.id, "c": community.id, "kb": rng.randint(10300, 52000)}
        item: dict[str, Any] = {
            "level": level,
            "message": message.format(**values),
            "stack_trace": stack.replace("{ms}", str(values["ms"])) if stack else None,
            "url": "https://community.example" + path.format(**values),
            "method": method,
            "user_agent": rng.choice(USER_AGENTS),
            "user_id": user.id,
            "extra_data": {"source": "demo", "community_id": community.id, "release": "2026.11.3"},
        }
        self._add(when, "error", item)

    def _background_error(self, when: datetime) -> None:
        level, message, method, path = self.rng.choice(BACKGROUND_ERRORS)
        item: dict[str, Any] = {
            "level": level,
            "message": message.format(n=self.rng.randint(2, 90)),
            "method": method,
            "url": "https://community.example" + path if path else None,
            "extra_data": {"source": "demo", "job": "background", "release": "2026.11.3"},
        }
        self._add(when, "error", item)

    def _metric_samples(self, slot: datetime) -> None:
        """One sample per system metric `update_system_metrics` records, following the platform's load then."""
        rng = self.rng
        load = min(1.2, sum(c.sessions_per_hour(slot) for c in self.world.communities) / self._peak)
        cpu = min(100.0, max(1.0, 6 + 70 * load + rng.gauss(0, 4)))
        weeks = (slot - self.history_start).total_seconds() / (7 * 86400)
        samples: dict[str, tuple[float, dict[str, Any]]] = {
            "cpu_usage": (round(cpu, 1), {"cores": 4}),
            "memory_usage": (round(min(99.0, 48 + 18 * load + rng.gauss(0, 1.5)), 1), {}),
            "disk_usage": (round(38 + 4 * weeks + rng.gauss(0, 0.05), 2), {}),
            "load_average": (round(max(0.05, 4 * cpu / 100 + rng.gauss(0, 0.2)), 2), {}),
            "database_connections": (float(max(1, round(4 + 30 * load + rng.gauss(0, 2)))), {}),
            "database_size_bytes": (float(round((180 + 40 * weeks) * 2**20 + rng.gauss(0, 2**16))), {}),
            "redis_memory_bytes": (float(round((6 + 10 * load + rng.gauss(0, 0.2)) * 2**20)), {}),
            "stream_backlog": (float(round(rng.expovariate(1 / 3) * load)), {"unit": "stream entries"}),
        }
        for name, (value, extra) in samples.items():
            item = {"metric_type": name, "value": value, "additional_data": {"source": "demo", **extra},
                    "recorded_at": slot}  # fmt: skip
            self._add(slot, "metric", item)


def _ceil(when: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    steps = math.ceil((when - epoch) / step)
    return epoch + steps * step


def simulate(simulator: Simulator, start: datetime, end: datetime) -> Iterator[tuple[datetime, list[Event]]]:
    """Hour by hour through [start, end): the moment reached and the events that happened by then."""
    for step_start, step_end in _hours(start, end):
        simulator.advance(step_start, step_end)
        yield step_end, simulator.due(step_end)


def history(seed: int, communities: int, users: int, start: datetime, end: datetime) -> list[Event]:
    """Every event `run` sends for the history [start, end) (before event ids are added)."""
    rng = random.Random(seed)  # noqa: S311 - simulated data, seeded to be repeatable
    simulator = Simulator(build_world(rng, communities, users, start, end), rng, start)
    return [event for _, events in simulate(simulator, start, end) for event in events]


def _hours(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut at whole hours, so each piece has one hour of the daily curve."""
    t = start
    while t < end:
        nxt = min(end, t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
        yield t, nxt
        t = nxt
