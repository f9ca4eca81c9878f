"""What `analytics bench` runs and what its command line can change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TARGETS = ("ingest", "queries", "live", "export")
DEFAULT_EVENTS = {"ingest": 200_000, "queries": 10_000_000, "live": 0, "export": 10_000_000}  # --events, per target


@dataclass(frozen=True)
class Options:
    """What the command line can change about a benchmark run."""

    # Each field is a command-line option (`--geo-events`), its help the metadata's; a bool field is a flag, and
    # `choices` in the metadata are the only values a field accepts.
    duration: int = field(default=10, metadata={"help": "ingest: seconds per HTTP measurement, after a 2 s warm-up"})
    connections: int = field(default=64, metadata={"help": "ingest: wrk connections"})
    events: int = field(
        default=DEFAULT_EVENTS["ingest"],
        metadata={"help": "ingest: events put through the stream -> table path (default 200000); queries, export: "
                  "activity events loaded (default 10000000)"},
    )  # fmt: skip
    geo_events: int = field(default=1_000_000, metadata={"help": "queries: geo access events loaded"})
    communities: int = field(default=1_000, metadata={"help": "queries: communities in the data set"})
    users: int = field(default=100_000, metadata={"help": "queries: members in the data set"})
    days: int = field(default=30, metadata={"help": "queries: days the data set spans, ending now"})
    samples: int = field(default=200, metadata={"help": "queries: timed requests per endpoint, after 20 warm-up ones"})
    streams: int = field(default=1_000, metadata={"help": "live: idle streams held open"})
    live_events: int = field(default=50, metadata={"help": "live: tracked events timed to their subscribers"})
    redis_cluster: int = field(
        default=0, metadata={"help": "ingest: measure on a Redis Cluster of this many masters too (at least 3)"}
    )
    raw_samples: int = field(
        default=0,
        metadata={"help": "queries: timed computations from the raw tables per endpoint, on the first communities "
                  "the endpoint was timed on (0: one per timed request, so that both p95s come from the same "
                  "requests)"},
    )  # fmt: skip
    peer: str = field(
        default="",
        metadata={"help": "queries: also compute the figures in this columnar database, embedded, and time it "
                  "(needs `pip install -e '.[bench]'`)", "choices": ("clickhouse",)},
    )  # fmt: skip
    growth: bool = field(
        default=False,
        metadata={"help": "queries: run the whole benchmark at 1000000 activity events (--events // 10 when that is "
                  "not larger) first, then at --events, and compare the p95s"},
    )  # fmt: skip

    @property
    def raw_count(self) -> int:
        """How many of the endpoint's timed communities the raw twin is timed on."""
        return min(self.raw_samples or self.samples, self.samples)

    @classmethod
    def of(cls, target: str, given: dict[str, Any]) -> Options:
        """The options of a run of `target`: what was given, the defaults for the rest (`events` per target)."""
        chosen = {name: value for name, value in given.items() if value is not None}
        chosen.setdefault("events", DEFAULT_EVENTS[target])
        return cls(**chosen)
