"""`analytics demo`: a simulated community platform whose activity goes through the API's real endpoints.

The simulated world: communities with an audience in one part of the world (a daily rhythm in that time zone,
busier or quieter at weekends, some refusing access from a few countries, regions or cities), and members from
25 countries with their own activity levels, memberships, trips abroad and VPNs. Members visit in sessions:
a geo-restriction decision when they enter (blocked ones may come back through a VPN: a restriction bypass),
then session_start (and a page view), views of sections and of posts, likes, comments, posts, messages,
session_end; new members join and register. Errors the platform logs and system metrics samples come along.

Everything is sent over HTTP with a service token (staff, so it may also queue tasks), as a platform backend
would: batch tracking requests of up to TRACK_MAX_BATCH events, a few at a time from a thread pool, retried
with the same event ids (stored once) on 429/503 and broken connections. History is back-dated with
`timestamp`, at most TRACK_MAX_AGE old (system metrics with `recorded_at`; error logs are stamped by the API
when they arrive). After the history the demo waits for the ingest worker to catch up (the API's
`analytics_stream_backlog` on /metrics), has the rollups refreshed over the back-dated rows (`refresh_rollups`
through /api/tasks, waiting for the run), then queues the snapshot and report tasks, so the dashboards show the
week at once. `--live-minutes` / `--follow` then keep members coming in real time, at `--live-scale` times
their usual rate. The same `--seed` gives the same world and the same history relative to the start time.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import math
import random
import sys
import threading
import time
import uuid
from bisect import bisect
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import msgspec

from service.auth.tokens import issue_token
from service.core.settings import ConfigError, Settings

Kind = Literal["activity", "geo", "platform", "error", "metric"]
Scope = Literal["country", "region", "city"]
SCOPES: tuple[Scope, ...] = ("country", "region", "city")

# Where each kind goes; the first three take lists (TRACK_MAX_BATCH items), the others one object per request.
PATHS: dict[Kind, str] = {
    "activity": "/api/community-analytics/track/batch/",
    "geo": "/api/geo-analytics/track/batch/",
    "platform": "/api/events/",
    "error": "/api/errors/",
    "metric": "/api/metrics/",
}
BATCHED: frozenset[Kind] = frozenset({"activity", "geo", "platform"})
# Queued once the history is in, in this order: rollups first, then what reads them.
TASKS = (
    "refresh_rollups",
    "update_community_analytics",  # presence of the back-dated quarter hours, which the daily rows read
    "update_daily_analytics",
    "update_user_analytics",
    "process_geo_restriction_analytics",
    "process_error_logs",
    "generate_analytics_reports",
    "generate_community_reports",
    "generate_geo_effectiveness_reports",
)
# History starts this long after the oldest moment TRACK_MAX_AGE accepts: sending takes a while.
AGE_MARGIN = timedelta(minutes=10)
METRIC_SLOT = timedelta(minutes=15)  # as the update_system_metrics task samples
LIVE_TICK = 2.0  # seconds between live rounds
REQUEST_DEADLINE = 120.0  # seconds one request may spend on retries (429, 503, broken connections)
CHECK_DEADLINE = 5.0  # seconds the first look at the API may take before the demo gives up
TOKEN_LIFETIME = 3600.0


class DemoError(Exception):
    """The demo cannot go on (the API refused something or is unreachable); the message says what."""


@dataclass(frozen=True)
class Options:
    """What `analytics demo` was asked for."""

    url: str
    communities: int = 12
    users: int = 1000
    days: int = 7
    live_minutes: float = 0.0
    follow: bool = False
    live_scale: float = 10.0  # live sessions at this many times the members' simulated rate
    seed: int = 1
    concurrency: int = 4
    wait: float = 300.0  # seconds for the ingest worker, then for the rollup refresh


def default_url(settings: Settings) -> str:
    """The API this machine's settings describe (a wildcard listen address means this host)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104 - compared, not bound
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


# --- The simulated world ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A place an access comes from, as the platform reports it."""

    country: str
    code: str
    region: str
    city: str


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    area: str
    weight: float  # share of the platform's members living there
    places: tuple[tuple[str, str], ...]  # (region, city)

    def place(self, rng: random.Random) -> Place:
        region, city = rng.choice(self.places)
        return Place(self.name, self.code, region, city)


# The UTC offset of each area's audience: communities follow the evenings of their own part of the world.
AREAS: dict[str, int] = {"americas": -5, "europe": 1, "asia": 8, "oceania": 10, "africa": 2}
COUNTRIES: tuple[Country, ...] = (
    Country("US", "United States", "americas", 16, (("California", "San Francisco"), ("New York", "New York"),
                                                    ("Texas", "Austin"), ("Illinois", "Chicago"))),
    Country("CA", "Canada", "americas", 4, (("Ontario", "Toronto"), ("Quebec", "Montreal"))),
    Country("MX", "Mexico", "americas", 4, (("Ciudad de Mexico", "Mexico City"), ("Jalisco", "Guadalajara"))),
    Country("BR", "Brazil", "americas", 7, (("Sao Paulo", "Sao Paulo"), ("Rio de Janeiro", "Rio de Janeiro"))),
    Country("AR", "Argentina", "americas", 2, (("Buenos Aires", "Buenos Aires"),)),
    Country("GB", "United Kingdom", "europe", 7, (("England", "London"), ("England", "Manchester"),
                                                  ("Scotland", "Edinburgh"))),
    Country("DE", "Germany", "europe", 7, (("Berlin", "Berlin"), ("Bavaria", "Munich"), ("Hamburg", "Hamburg"))),
    Country("FR", "France", "europe", 5, (("Ile-de-France", "Paris"), ("Auvergne-Rhone-Alpes", "Lyon"))),
    Country("ES", "Spain", "europe", 3, (("Madrid", "Madrid"), ("Catalonia", "Barcelona"))),
    Country("IT", "Italy", "europe", 3, (("Lazio", "Rome"), ("Lombardy", "Milan"))),
    Country("NL", "Netherlands", "europe", 2, (("North Holland", "Amsterdam"),)),
    Country("PL", "Poland", "europe", 2, (("Masovia", "Warsaw"), ("Lesser Poland", "Krakow"))),
    Country("SE", "Sweden", "europe", 1, (("Stockholm", "Stockholm"),)),
    Country("UA", "Ukraine", "europe", 2, (("Kyiv", "Kyiv"), ("Lviv", "Lviv"))),
    Country("TR", "Turkey", "europe", 3, (("Istanbul", "Istanbul"), ("Ankara", "Ankara"))),
    Country("RU", "Russia", "europe", 4, (("Moscow", "Moscow"), ("Saint Petersburg", "Saint Petersburg"))),
    Country("IN", "India", "asia", 8, (("Maharashtra", "Mumbai"), ("Karnataka", "Bengaluru"), ("Delhi", "New Delhi"))),
    Country("CN", "China", "asia", 3, (("Beijing", "Beijing"), ("Shanghai", "Shanghai"))),
    Country("JP", "Japan", "asia", 4, (("Tokyo", "Tokyo"), ("Osaka", "Osaka"))),
    Country("KR", "South Korea", "asia", 2, (("Seoul", "Seoul"),)),
    Country("ID", "Indonesia", "asia", 3, (("Jakarta", "Jakarta"),)),
    Country("AU", "Australia", "oceania", 3, (("New South Wales", "Sydney"), ("Victoria", "Melbourne"))),
    Country("NG", "Nigeria", "africa", 2, (("Lagos", "Lagos"),)),
    Country("EG", "Egypt", "africa", 1, (("Cairo", "Cairo"),)),
    Country("ZA", "South Africa", "africa", 1, (("Gauteng", "Johannesburg"),)),
)  # fmt: skip
_COUNTRY_WEIGHTS = list(itertools.accumulate(c.weight for c in COUNTRIES))
# Where VPN users appear to come from when their own country is refused.
VPN_EXITS: tuple[Place, ...] = (
    Place("Netherlands", "NL", "North Holland", "Amsterdam"),
    Place("Sweden", "SE", "Stockholm", "Stockholm"),
    Place("United States", "US", "Virginia", "Ashburn"),
)
# Relative activity by local hour of day (mean 1): quiet nights, a lunch bump, busy evenings.
_CURVE = (0.45, 0.27, 0.16, 0.1, 0.09, 0.13, 0.3, 0.62, 0.9, 1.0, 1.05, 1.12, 1.25, 1.18, 1.1, 1.08, 1.15,
          1.35, 1.62, 1.9, 2.05, 1.98, 1.55, 0.95)  # fmt: skip
DIURNAL = tuple(v * 24 / sum(_CURVE) for v in _CURVE)
COMMUNITY_NAMES = (
    "Street Photography", "Retro Gaming", "Home Cooking", "Indie Developers", "Running Club", "Board Games",
    "Urban Gardening", "Jazz Lovers", "Language Exchange", "Mechanical Keyboards", "Climbing", "Book Circle",
    "Film Critics", "Astronomy", "Parenting", "Cycling", "Chess", "Woodworking", "Travel Stories", "Pet Rescue",
)  # fmt: skip
SECTIONS = ("feed", "feed", "feed", "post", "post", "members", "events", "chat", "chat", "about")
DEVICES = ("web", "web", "ios", "android", "android")


@dataclass(frozen=True)
class Restriction:
    """A community refuses access from a country, or from one region or city of it."""

    code: str
    scope: Scope
    name: str | None = None  # the region or city for those scopes

    def blocks(self, place: Place) -> bool:
        if place.code != self.code:
            return False
        if self.scope == "region":
            return place.region == self.name
        if self.scope == "city":
            return place.city == self.name
        return True


@dataclass
class Community:
    id: int
    name: str
    area: str
    weekend_factor: float  # weekend days' activity relative to weekdays
    restrictions: tuple[Restriction, ...]
    members: list[int] = field(default_factory=list)  # user ids
    cumulative: list[float] = field(default_factory=list)  # running sum of the members' session rates
    rate: float = 0.0  # member sessions per day, on an average day

    @property
    def utc_offset(self) -> int:
        return AREAS[self.area]

    def restriction_for(self, place: Place) -> Restriction | None:
        return next((r for r in self.restrictions if r.blocks(place)), None)

    def sessions_per_hour(self, when: datetime) -> float:
        """Expected member sessions per hour at this moment: the day's rate shaped by the local clock."""
        local = when + timedelta(hours=self.utc_offset)
        weekend = self.weekend_factor if local.weekday() >= 5 else 1.0
        return self.rate / 24 * DIURNAL[local.hour] * weekend

    def pick_member(self, rng: random.Random) -> int:
        return self.members[bisect(self.cumulative, rng.random() * self.cumulative[-1])]


@dataclass(frozen=True)
class Trip:
    start: datetime
    end: datetime
    place: Place


@dataclass
class User:
    id: int
    home: Place
    engagement: float  # how much a session holds (views), relative
    vpn: bool  # comes back through a VPN when refused
    new: bool  # registers and joins during the demo
    trip: Trip | None

    def place_at(self, when: datetime) -> Place:
        if self.trip is not None and self.trip.start <= when < self.trip.end:
            return self.trip.place
        return self.home


@dataclass
class World:
    communities: list[Community]
    users: dict[int, User]


def _country(rng: random.Random, exclude: str | None = None) -> Country:
    while True:
        country = COUNTRIES[bisect(_COUNTRY_WEIGHTS, rng.random() * _COUNTRY_WEIGHTS[-1])]
        if country.code != exclude:
            return country


def build_world(rng: random.Random, communities: int, users: int, start: datetime, end: datetime) -> World:
    """Communities and members, drawn from `rng` (the same seed gives the same world)."""
    area_names = list(AREAS)
    area_weights = [0.33, 0.37, 0.18, 0.06, 0.06]
    world = World([], {})
    for i in range(1, communities + 1):
        area = rng.choices(area_names, area_weights)[0]
        name = COMMUNITY_NAMES[(i - 1) % len(COMMUNITY_NAMES)]
        if i > len(COMMUNITY_NAMES):
            name = f"{name} {(i - 1) // len(COMMUNITY_NAMES) + 1}"
        weekend = rng.choice((0.6, 0.8, 1.0, 1.0, 1.3, 1.6))
        world.communities.append(Community(i, name, area, weekend, ()))
    popularity = [1 / (i + 1) ** 0.7 for i in range(communities)]  # a few big communities, a long tail
    span = (end - start).total_seconds()
    for user_id in range(1, users + 1):
        country = _country(rng)
        home = country.place(rng)
        trip = None
        if span > 0 and rng.random() < 0.08:
            begins = start + timedelta(seconds=rng.random() * span)
            abroad = _country(rng, exclude=country.code)
            trip = Trip(begins, begins + timedelta(days=rng.uniform(1, 4)), abroad.place(rng))
        user = User(user_id, home, rng.lognormvariate(0, 0.5), rng.random() < 0.25, rng.random() < 0.1, trip)
        world.users[user_id] = user
        # Sessions a day over all of the member's communities: most drop by now and then, a few live there.
        rate = min(12.0, rng.lognormvariate(-0.4, 0.9))
        affinity = [
            p * (3 if c.area == country.area else 1) for p, c in zip(popularity, world.communities, strict=True)
        ]
        joined: list[Community] = []
        for _ in range(min(communities, 1 + min(3, int(rng.expovariate(1.0))))):
            choice = rng.choices(world.communities, affinity)[0]
            if choice not in joined:
                joined.append(choice)
        shares = [rng.uniform(0.3, 1.0) for _ in joined]
        for community, share in zip(joined, shares, strict=True):
            community_rate = rate * share / sum(shares)
            community.members.append(user_id)
            community.rate += community_rate
            community.cumulative.append(community.rate)
    world.communities = [c for c in world.communities if c.members] or world.communities[:1]
    for community in world.communities:
        # Every third community (and a few others) refuses access from where some of its members live
        # (licensing, local law): mostly whole countries, never the one most of its members come from.
        if community.id % 3 == 2 or rng.random() < 0.2:
            community.restrictions = _restrictions(rng, [world.users[m].home for m in community.members])
    return world


def _restrictions(rng: random.Random, homes: list[Place]) -> tuple[Restriction, ...]:
    counts = Counter(place.code for place in homes)
    candidates = [code for code, _ in counts.most_common()[1:]] or [_country(rng).code]
    chosen: list[Restriction] = []
    for _ in range(rng.randint(1, 3)):
        code = rng.choices(candidates, [counts[c] or 1 for c in candidates])[0]
        if any(r.code == code for r in chosen):
            continue
        places = [p for p in homes if p.code == code] or [_by_code(code).place(rng)]
        place = rng.choice(places)
        scope = rng.choices(SCOPES, (0.7, 0.2, 0.1))[0]
        chosen.append(Restriction(code, scope, {"country": None, "region": place.region, "city": place.city}[scope]))
    return tuple(chosen)


def _by_code(code: str) -> Country:
    return next(c for c in COUNTRIES if c.code == code)


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


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson-distributed count with mean `lam` (normal approximation for large means)."""
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


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


def _problem(status: int, data: bytes) -> str:
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
            raise DemoError(f"the API at {self.api.describe()} has no POST {PATHS[kind]} ({_problem(status, data)})")
        if not 200 <= status < 300:
            raise DemoError(f"POST {PATHS[kind]} was refused: {_problem(status, data)}")
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


# --- Progress -----------------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal; on anything else a line at each tenth."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream, self.label = stream, label
        self.tty = stream.isatty()
        self._last = 0.0
        self._tenth = -1

    def update(self, fraction: float, note: str, force: bool = False) -> None:
        fraction = min(1.0, max(0.0, fraction))
        if self.tty:
            now = time.monotonic()
            if not force and now - self._last < 0.1:
                return
            self._last = now
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            self.stream.write(f"\r{self.label} [{bar}] {fraction * 100:3.0f}% {note}\x1b[K")
        elif force or (int(fraction * 10) > self._tenth and fraction < 1.0):
            self._tenth = int(fraction * 10)
            self.stream.write(f"{self.label} {fraction * 100:3.0f}% {note}\n")
        self.stream.flush()

    def done(self, note: str) -> None:
        self.update(1.0, note, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _counts(sent: Counter[str]) -> str:
    return f"{sent['activity'] + sent['platform']:,} events, {sent['geo']:,} geo decisions"


# --- The command --------------------------------------------------------------------------------------------


def history_window(settings: Settings, days: int, now: datetime) -> datetime:
    """Where the history starts: `days` back, but never older than the API accepts (TRACK_MAX_AGE)."""
    max_days = math.ceil(settings.track_max_age / 86400)
    if days < 0:
        raise ConfigError(f"--days: expected 0 or more, got {days}")
    if days > max_days:
        raise ConfigError(
            f"--days: at most {max_days}: the API accepts events up to TRACK_MAX_AGE ({settings.track_max_age} s) old"
        )
    if days and timedelta(seconds=settings.track_max_age) <= AGE_MARGIN:
        raise ConfigError(f"--days: TRACK_MAX_AGE ({settings.track_max_age} s) leaves no room for history; --days 0")
    oldest = now - timedelta(seconds=settings.track_max_age) + AGE_MARGIN
    return max(now - timedelta(days=days), oldest)


def run(settings: Settings, options: Options, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo; returns the exit code (1 when the API refused or could not be reached)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if options.live_minutes < 0 or options.live_scale <= 0:
        raise ConfigError("--live-minutes: expected 0 or more; --live-scale: expected more than 0")
    now = datetime.now(UTC).replace(microsecond=0)
    start = history_window(settings, options.days, now)
    api = Api(options.url, settings)
    api.token()  # a missing JWT_SECRET is a configuration error: say so before anything else
    try:
        api.check()  # nothing answering at the URL: say so at once, not after minutes of retries
    except DemoError as exc:
        err.write(f"analytics demo: {exc}\n")
        return 1
    # As history() draws: the same seed, the same world and events. Simulated data, not security.
    rng = random.Random(options.seed)  # noqa: S311
    world = build_world(rng, options.communities, options.users, start, now)
    simulator = Simulator(world, rng, start)
    restricting = sum(1 for c in world.communities if c.restrictions)
    out.write(
        f"demo: {len(world.communities)} communities ({restricting} with geo restrictions), {len(world.users):,} "
        f"members, seed {options.seed}, sending to {api.describe()}\n"
    )
    out.flush()
    sender = Sender(api, min(settings.track_max_batch, 500), options.concurrency)
    try:
        if start < now:
            began = time.monotonic()
            _send_history(simulator, sender, start, now, err)
            out.write(
                f"history {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC, sent in "
                f"{time.monotonic() - began:.0f} s: {_counts(sender.sent)} "
                f"({sender.sent['blocked']:,} blocked, from {len(sender.countries)} countries), "
                f"{sender.sent['error']:,} error logs, {sender.sent['metric']:,} system metric samples\n"
            )
            out.flush()
            _after_history(api, options, settings, out, err)
        if options.live_minutes > 0 or options.follow:
            # The same simulator: sessions in progress at the end of the history go on.
            simulator.metrics = False
            simulator.scale = options.live_scale
            _live(simulator, sender, now, options, out, err)
    except DemoError as exc:
        err.write(f"\nanalytics demo: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sender.flush()
        out.write(f"stopped: {_counts(sender.sent)} sent in all\n")
    finally:
        sender.close()
        api.close()
    return 0


def _send_history(simulator: Simulator, sender: Sender, start: datetime, end: datetime, err: TextIO) -> None:
    progress = Progress(err, "history")
    span = (end - start).total_seconds()
    for reached, events in simulate(simulator, start, end):
        for _, _, kind, item in events:
            sender.add(kind, item)
        progress.update((reached - start).total_seconds() / span, f"{reached:%a %H:00} {_counts(sender.sent)}")
    sender.flush()
    progress.done(_counts(sender.sent))


def _after_history(api: Api, options: Options, settings: Settings, out: TextIO, err: TextIO) -> None:
    """Wait for the ingest worker to store the history, have the rollups refreshed over it (back-dated rows
    are in the rollups only after a refresh), then queue the snapshots and reports that read them."""
    deadline = time.monotonic() + options.wait
    if options.wait > 0:
        backlog = _wait_for_ingest(api, settings, deadline, err)
        if backlog is None:
            out.write("ingest: the API's /metrics has no analytics_stream_backlog; not waiting for the ingest worker\n")
        elif backlog:
            out.write(f"ingest: {backlog:,} stream entries still waiting after {options.wait:g} s\n")
        else:
            out.write("ingest: every event is stored\n")
    refresh, *others = TASKS
    run_id = _queue(api, refresh)
    if options.wait > 0:
        run_id, status = _wait_for_run(api, refresh, run_id, deadline)
    else:
        status = "queued"
    out.write(f"{refresh} (run {run_id}): {status}")
    if status == "queued":
        out.write(" (is `analytics worker` running?)")
    out.write("\n")
    queued = [f"{task} (run {_queue(api, task)})" for task in others]
    out.write("queued for the task worker: " + ", ".join(queued) + "\n")
    out.flush()


def _queue(api: Api, task: str) -> int:
    status, data = api.request("POST", f"/api/tasks/{task}/run/")
    if status != 202:
        raise DemoError(f"POST /api/tasks/{task}/run/ was refused: {_problem(status, data)}")
    run_id: int = msgspec.json.decode(data)["run_id"]
    return run_id


def _wait_for_run(api: Api, task: str, run_id: int, deadline: float) -> tuple[int, str]:
    """Poll the recorded runs until this one is over (or the deadline passes): the run and its last status. A run
    skipped because a scheduled run of the task held its lock is asked for again: that run may have started too
    early."""
    while True:
        status, data = api.request("GET", f"/api/tasks/runs/?task={task}&limit=20")
        if status != 200:
            raise DemoError(f"GET /api/tasks/runs/ was refused: {_problem(status, data)}")
        runs = {run["id"]: run for run in msgspec.json.decode(data)["results"]}
        state = runs.get(run_id, {}).get("status", "queued")
        if state == "skipped" and time.monotonic() < deadline:
            run_id = _queue(api, task)
        elif state in ("success", "failure", "skipped") or time.monotonic() >= deadline:
            return run_id, str(state)
        time.sleep(0.5)


def _wait_for_ingest(api: Api, settings: Settings, deadline: float, err: TextIO) -> int | None:
    """Poll the backlog gauge on /metrics until it is 0; None when the API does not export it."""
    headers = {"Authorization": f"Bearer {settings.metrics_token}"} if settings.metrics_token else {}
    progress = Progress(err, "ingest ")
    first: int | None = None
    while True:
        status, data = api.request("GET", "/metrics", headers=headers, auth=False)
        backlog = _gauge(data.decode(errors="replace"), "analytics_stream_backlog") if status == 200 else None
        if backlog is None:
            return None
        first = first or backlog
        progress.update(1 - backlog / first if first else 1.0, f"{backlog:,} stream entries to store")
        if backlog == 0 or time.monotonic() > deadline:
            progress.done(f"{backlog:,} stream entries to store")
            return backlog
        time.sleep(0.5)


def _gauge(exposition: str, name: str) -> int | None:
    """The value of an unlabelled gauge in the Prometheus text format."""
    for line in exposition.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def _live(simulator: Simulator, sender: Sender, since: datetime, options: Options, out: TextIO, err: TextIO) -> None:
    """Members keep coming in real time, until --live-minutes pass (or, with --follow, until Ctrl-C)."""
    before = sender.sent.copy()
    ends = None if options.follow else time.monotonic() + options.live_minutes * 60
    progress = Progress(err, "live   ")
    started = time.monotonic()
    last = since
    while ends is None or time.monotonic() < ends:
        now = datetime.now(UTC)
        for _, events in simulate(simulator, last, now):
            for _, _, kind, item in events:
                sender.add(kind, item)
        sender.flush()
        last = now
        live = sender.sent - before
        elapsed = time.monotonic() - started
        fraction = elapsed / (options.live_minutes * 60) if ends is not None else 0.0
        progress.update(
            fraction, f"{now:%H:%M:%S} UTC {_counts(live)} live" + (" (Ctrl-C stops)" if ends is None else "")
        )
        time.sleep(LIVE_TICK)
    progress.done(_counts(sender.sent - before) + " live")
    out.write(f"live: {_counts(sender.sent - before)}, {(sender.sent - before)['error']:,} error logs\n")
