"""`analytics bench`: throughput benchmarks, each figure beside a baseline measured in the same run."""

from __future__ import annotations

from dataclasses import dataclass

from service.settings import Settings

TARGETS = ("ingest",)  # `queries` comes later


@dataclass(frozen=True)
class Options:
    """What the command line can change about a benchmark run."""

    duration: int = 10  # seconds per HTTP measurement (after a 2 s warm-up)
    connections: int = 64  # wrk connections
    events: int = 200_000  # events put through the stream -> table path


def run(settings: Settings, target: str, options: Options) -> int:
    """Run the benchmark named `target`; returns the exit code."""
    if target == "ingest":
        from service.bench import ingest

        return ingest.run(settings, options)
    raise ValueError(f"unknown benchmark {target!r}; expected one of {', '.join(TARGETS)}")
