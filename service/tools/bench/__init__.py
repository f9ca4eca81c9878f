"""`analytics bench`: throughput and latency benchmarks, each figure beside a baseline measured in the same run."""

from __future__ import annotations

from service.core.settings import Settings
from service.tools.bench.options import TARGETS, Options


def run(settings: Settings, target: str, options: Options) -> int:
    """Run the benchmark named `target`; returns the exit code."""
    if target == "ingest":
        from service.tools.bench import ingest

        return ingest.run(settings, options)
    if target == "queries":
        from service.tools.bench import queries

        return queries.run(settings, options)
    if target == "export":
        from service.tools.bench import export

        return export.run(settings, options)
    if target == "live":
        from service.tools.bench import live

        return live.run(settings, options)
    raise ValueError(f"unknown benchmark {target!r}; expected one of {', '.join(TARGETS)}")
