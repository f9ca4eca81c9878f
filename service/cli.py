"""The `analytics` command: dev, serve, migrate, ingest, worker, bench."""

from __future__ import annotations

import argparse
import logging
import sys

from service import __version__
from service.db import DatabaseUnavailable, connect, detect_engine
from service.localstack import StackError
from service.migrations import MigrationError, migrate
from service.settings import ENV_NAMES, ConfigError, Settings, from_env

log = logging.getLogger("analytics")


def _require(settings: Settings, *names: str) -> None:
    missing = [n for n in names if getattr(settings, n) is None]
    if missing:
        variables = " and ".join(ENV_NAMES[n] for n in missing)
        raise ConfigError(f"{variables}: must be set for this command (or use `analytics dev`)")


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from service import dev

    return dev.run(settings)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    _require(settings, "database_url", "redis_url")
    uvicorn.run(
        "service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        server_header=False,
    )
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    _require(settings, "database_url")
    assert settings.database_url is not None
    with connect(settings.database_url, settings.db_wait, prepared=settings.db_prepared_statements) as conn:
        engine = detect_engine(conn)
        outcome = migrate(conn, engine)
    if outcome.applied:
        print(f"engine {engine}: applied {len(outcome.applied)} file(s):")
        for name in outcome.applied:
            print(f"  db/{name}")
    else:
        print(f"engine {engine}: schema is current, nothing to apply")
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from service.ingest import worker

    _require(settings, "database_url", "redis_url")
    worker.run(settings)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from service import tasks

    _require(settings, "database_url", "redis_url")
    tasks.run_worker(settings, workers=args.threads, periodic=not args.no_periodic)
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from service import bench

    options = bench.Options(
        duration=args.duration,
        connections=args.connections,
        events=args.events if args.events is not None else bench.DEFAULT_EVENTS[args.target],
        geo_events=args.geo_events,
        communities=args.communities,
        users=args.users,
        days=args.days,
        samples=args.samples,
        raw_samples=args.raw_samples,
    )
    return bench.run(settings, args.target, options)


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="analytics", description="Community analytics service.")
    p.add_argument("--version", action="version", version=f"analytics {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("dev", help="run everything locally (embedded PostgreSQL and Redis unless URLs are set)")
    sub.add_parser("serve", help="run the HTTP API")
    sub.add_parser("migrate", help="apply pending migrations and the engine's rollup definitions")
    sub.add_parser("ingest", help="run the ingest worker (stream -> raw tables)")
    worker = sub.add_parser("worker", help="run the huey worker (periodic tasks)")
    worker.add_argument("--threads", type=int, default=2, help="worker threads (default 2)")
    worker.add_argument(
        "--no-periodic", action="store_true", help="run queued tasks only; one worker schedules the periodic ones"
    )
    bench = sub.add_parser(
        "bench",
        help="measure throughput and latency beside baselines of the same run (starts its own servers unless URLs "
        "are set)",
    )
    bench.add_argument(
        "target",
        choices=["ingest", "queries"],
        help="what to measure: ingest (tracking and stream -> table) or queries (read endpoints against the same "
        "figures computed from the raw tables)",
    )
    bench.add_argument(
        "--duration",
        type=_positive,
        default=10,
        metavar="SECONDS",
        help="ingest: seconds per HTTP measurement (default 10)",
    )
    bench.add_argument("--connections", type=_positive, default=64, help="ingest: wrk connections (default 64)")
    bench.add_argument(
        "--events",
        type=_positive,
        default=None,
        help="ingest: events put through the stream -> table path (default 200000); queries: activity events "
        "loaded (default 10000000)",
    )
    bench.add_argument(
        "--geo-events", type=_positive, default=1_000_000, help="queries: geo access events loaded (default 1000000)"
    )
    bench.add_argument("--communities", type=_positive, default=1_000, help="queries: communities (default 1000)")
    bench.add_argument("--users", type=_positive, default=100_000, help="queries: members (default 100000)")
    bench.add_argument(
        "--days", type=_positive, default=30, help="queries: days the data set spans, ending now (default 30)"
    )
    bench.add_argument(
        "--samples", type=_positive, default=200, help="queries: timed requests per endpoint (default 200)"
    )
    bench.add_argument(
        "--raw-samples",
        type=_positive,
        default=20,
        help="queries: timed computations from the raw tables per endpoint (default 20)",
    )
    return p


COMMANDS = {
    "dev": cmd_dev,
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "ingest": cmd_ingest,
    "worker": cmd_worker,
    "bench": cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `analytics` console script; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        settings = from_env()
    except ConfigError as exc:
        print(f"analytics: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"analytics: configuration error: {exc}", file=sys.stderr)
        return 2
    except (MigrationError, DatabaseUnavailable, StackError) as exc:
        print(f"analytics: {exc}", file=sys.stderr)
        return 1
