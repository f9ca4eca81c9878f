"""`analytics bench`: throughput and latency benchmarks, each figure beside a baseline measured in the same run."""

from __future__ import annotations

from dataclasses import dataclass

from service.core.settings import Settings

TARGETS = ("ingest", "queries")
DEFAULT_EVENTS = {"ingest": 200_000, "queries": 10_000_000}  # --events when not given, per target


@dataclass(frozen=True)
class Options:
    """What the command line can change about a benchmark run."""

    duration: int = 10  # ingest: seconds per HTTP measurement (after a 2 s warm-up)
    connections: int = 64  # ingest: wrk connections
    events: int = 200_000  # ingest: events put through the stream -> table path; queries: activity events loaded
    geo_events: int = 1_000_000  # queries: geo access events loaded
    communities: int = 1_000  # queries: communities in the data set
    users: int = 100_000  # queries: members in the data set
    days: int = 30  # queries: days the data set spans, ending now
    samples: int = 200  # queries: timed requests per endpoint (after 20 warm-up ones)
    raw_samples: int = 20  # queries: timed raw computations per endpoint


def run(settings: Settings, target: str, options: Options) -> int:
    """Run the benchmark named `target`; returns the exit code."""
    if target == "ingest":
        from service.tools.bench import ingest

        return ingest.run(settings, options)
    if target == "queries":
        from service.tools.bench import queries

        return queries.run(settings, options)
    raise ValueError(f"unknown benchmark {target!r}; expected one of {', '.join(TARGETS)}")
