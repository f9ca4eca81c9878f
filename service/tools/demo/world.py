"""The simulated world: countries and places, communities with their audience, rhythm and restrictions, and
members with their homes, trips and habits (`build_world`)."""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

Kind = Literal["activity", "geo", "platform", "error", "metric"]
Scope = Literal["country", "region", "city"]
SCOPES: tuple[Scope, ...] = ("country", "region", "city")


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
    arrives: datetime | None = None  # a new member's first visit to each of its communities (in the history)

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
        if user.new and span > 0:
            user.arrives = start + timedelta(seconds=rng.random() * span)
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
    if span > 0:
        for community in world.communities:
            _welcome(rng, community, world.users, start, span)
            _send_abroad(rng, community, world.users, start, span)
    return world


def _welcome(rng: random.Random, community: Community, users: dict[int, User], start: datetime, span: float) -> None:
    """Every community gains a member during the history: unless one of its new members stays home where the
    community lets them in, such a member becomes new (so each community's joins show on the dashboards)."""
    welcome = [
        m for m in community.members if users[m].trip is None and community.restriction_for(users[m].home) is None
    ]
    if welcome and not any(users[m].new for m in welcome):
        user = users[rng.choice(welcome)]
        user.new, user.arrives = True, start + timedelta(seconds=rng.random() * span)


def _send_abroad(
    rng: random.Random, community: Community, users: dict[int, User], start: datetime, span: float
) -> None:
    """Every community has a member who travels during the history (so its traveler figures show)."""
    if any(users[m].trip is not None for m in community.members):
        return
    user = users[rng.choice(community.members)]
    begins = start + timedelta(seconds=rng.random() * span * 0.8)
    abroad = _country(rng, exclude=user.home.code)
    user.trip = Trip(begins, begins + timedelta(days=rng.uniform(1, 4)), abroad.place(rng))


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
