"""The `analytics` command: dev, serve, migrate, ingest, worker, bench, demo, token, export."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

import msgspec

from service import __version__
from service.core.db import DatabaseUnavailable, connect, detect_engine
from service.core.settings import ENV_NAMES, ConfigError, Settings, from_env
from service.export.datasets import DATASETS
from service.storage.migrations import MigrationError, migrate
from service.tools.bench.options import TARGETS, Options
from service.tools.localstack import StackError

log = logging.getLogger("analytics")


def _require(settings: Settings, *names: str) -> None:
    missing = [n for n in names if getattr(settings, n) is None]
    if missing:
        variables = " and ".join(ENV_NAMES[n] for n in missing)
        raise ConfigError(f"{variables}: must be set for this command (or use `analytics dev`)")


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from service.tools import dev

    return dev.run(settings, redis_cluster=args.redis_cluster, replicas=args.replicas)


SHUTDOWN_GRACE = 10  # seconds


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from service.observability.exposition import multiprocess_dir

    _require(settings, "database_url", "redis_url")
    # Several worker processes share their metrics through files; the directory is set up before they start.
    with multiprocess_dir(settings.workers):
        uvicorn.run(
            "service.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level.lower(),
            proxy_headers=False,
            server_header=False,
            # At a stop, answers under way get this long; live streams end at once (service/app.py).
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
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
    from service.observability.exposition import metrics_server

    _require(settings, "database_url", "redis_url")
    with metrics_server(settings.host, settings.ingest_metrics_port, settings.metrics_token, "INGEST_METRICS_PORT"):
        worker.run(settings)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from service.observability.exposition import metrics_server
    from service.tasks import worker as tasks

    _require(settings, "database_url", "redis_url")
    # The task metrics are counted in this process (service/tasks/worker.py), so they are served from here.
    with metrics_server(settings.host, settings.worker_metrics_port, settings.metrics_token, "WORKER_METRICS_PORT"):
        tasks.run_worker(settings, workers=args.threads, periodic=not args.no_periodic)
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from service.tools import bench

    options = Options.of(args.target, {f.name: getattr(args, f.name) for f in dataclasses.fields(Options)})
    return bench.run(settings, args.target, options)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from service.tools.demo import runner as demo

    options = demo.Options(
        url=args.url or demo.default_url(settings),
        communities=args.communities,
        users=args.users,
        days=args.days,
        live_minutes=args.live_minutes,
        follow=args.follow,
        live_scale=args.live_scale,
        seed=args.seed,
        concurrency=args.concurrency,
        wait=args.wait,
    )
    return demo.run(_signing(settings), options)


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from service.tools import export

    _require(settings, "database_url")
    return export.run(settings, args.dataset, args.date_from, args.date_to, args.community, args.format, Path(args.out))


def _signing(settings: Settings) -> Settings:
    """The settings to sign tokens with: without JWT_SECRET (HS256), the development stack's secret that
    `analytics dev` keeps in the data directory, so the tokens work against that stack."""
    from pathlib import Path

    from service.tools.dev import dev_jwt_secret

    if settings.jwt_algorithm == "HS256" and settings.jwt_secret is None:
        settings = msgspec.structs.replace(settings, jwt_secret=dev_jwt_secret(Path(settings.data_dir), create=False))
    return settings


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.auth.tokens import issue_token

    settings = _signing(settings)
    private_key = Path(args.private_key).read_bytes() if args.private_key else None
    subject = args.service if args.service else str(args.user)
    token = issue_token(
        settings,
        subject,
        staff=args.staff,
        moderated=args.moderate,
        service=args.service is not None,
        lifetime=args.lifetime,
        private_key=private_key,
    )
    print(token)
    return 0


def _communities(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected community ids separated by commas, got {text!r}") from None
    if any(i < 1 for i in ids):
        raise argparse.ArgumentTypeError(f"expected positive community ids, got {text!r}")
    return ids


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
    dev = sub.add_parser("dev", help="run everything locally (embedded PostgreSQL and Redis unless URLs are set)")
    dev.add_argument("--redis-cluster", type=int, default=0, metavar="MASTERS",
                     help="live state on a Redis Cluster of this many masters (at least 3), the task queue on a "
                     "plain Redis beside it")  # fmt: skip
    dev.add_argument("--replicas", type=int, default=0, metavar="N",
                     help="N streaming replicas of the embedded PostgreSQL, for the report reads")  # fmt: skip
    sub.add_parser("serve", help="run the HTTP API")
    sub.add_parser("migrate", help="apply pending migrations and the engine's rollup definitions")
    sub.add_parser("ingest", help="run the ingest worker (stream -> raw tables)")
    worker = sub.add_parser("worker", help="run the huey worker (periodic tasks)")
    worker.add_argument("--threads", type=int, default=2, help="worker threads (default 2)")
    worker.add_argument(
        "--no-periodic", action="store_true", help="run queued tasks only; one worker schedules the periodic ones"
    )
    _bench_options(sub)
    _token_options(sub)
    _demo_options(sub)
    _export_options(sub)
    return p


def _export_options(sub: Any) -> None:
    export = sub.add_parser(
        "export", help="write a dataset's rows of a range of days to a file, as GET /api/export/{dataset}/ streams them"
    )
    export.add_argument("dataset", choices=list(DATASETS), help="what to export")
    export.add_argument("--from", dest="date_from", type=date.fromisoformat, help="first day, YYYY-MM-DD (UTC)")
    export.add_argument("--to", dest="date_to", type=date.fromisoformat, help="last day, inclusive (default today)")
    export.add_argument("--community", type=_positive, help="only this community")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv", help="default csv")
    export.add_argument("--out", required=True, metavar="FILE", help="where to write it")


def _bench_options(sub: Any) -> None:
    bench = sub.add_parser(
        "bench",
        help="measure throughput and latency beside baselines of the same run (starts its own servers unless URLs "
        "are set)",
    )
    bench.add_argument(
        "target",
        choices=TARGETS,
        help="what to measure: ingest (tracking and stream -> table), queries (read endpoints against the same "
        "figures computed from the raw tables), export (the export endpoint against a bare COPY) or live (idle "
        "streams' memory, event-to-push delay)",
    )
    for option in dataclasses.fields(Options):  # --duration, --geo-events, ...: one per field, its default there
        text = option.metadata["help"]
        kind: dict[str, Any] = {"type": _positive}
        if option.type in (bool, "bool"):
            kind = {"action": "store_true"}
        elif "choices" in option.metadata:
            kind = {"choices": option.metadata["choices"]}
        elif option.name != "events":  # whose default depends on the target
            text += f" (default {option.default})"
        bench.add_argument(f"--{option.name.replace('_', '-')}", **kind, default=None, help=text)


def _token_options(sub: Any) -> None:
    token = sub.add_parser(
        "token",
        help="print a signed token for local development (JWT_SECRET, or the secret `analytics dev` created)",
    )
    who = token.add_mutually_exclusive_group()
    who.add_argument("--user", type=_positive, default=1, help="the user id (`sub`), default 1")
    who.add_argument("--service", metavar="NAME", help="a service token for this backend instead of a user's")
    token.add_argument("--staff", action="store_true", help="with the staff claim")
    token.add_argument(
        "--moderate", type=_communities, default=[], metavar="IDS", help="moderated community ids, e.g. 5,7"
    )
    token.add_argument("--lifetime", type=_positive, default=3600, metavar="SECONDS", help="default 3600")
    token.add_argument("--private-key", metavar="PEM", help="RS256: the issuer's private key file")


def _demo_options(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="send a simulated platform's activity through a running API (signed with JWT_SECRET, else the dev secret)",
    )
    demo.add_argument("--url", help="API base URL (default http://ANALYTICS_HOST:ANALYTICS_PORT)")
    demo.add_argument("--communities", type=_positive, default=12, help="communities (default 12)")
    demo.add_argument("--users", type=_positive, default=1000, help="members (default 1000)")
    demo.add_argument(
        "--days", type=int, default=7, help="days of history, at most what TRACK_MAX_AGE accepts (default 7; 0: none)"
    )
    demo.add_argument(
        "--live-minutes", type=float, default=0.0, help="then this many minutes of live activity (default 0)"
    )
    demo.add_argument("--follow", action="store_true", help="then live activity until Ctrl-C")
    demo.add_argument(
        "--live-scale",
        type=float,
        default=10.0,
        help="live sessions at this many times the members' usual rate, so the realtime figures move (default 10)",
    )
    demo.add_argument("--seed", type=int, default=1, help="the same seed gives the same world and history (default 1)")
    demo.add_argument("--concurrency", type=_positive, default=4, help="requests in flight (default 4)")
    demo.add_argument(
        "--wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="after the history, wait up to this long for the ingest worker and the rollup refresh before "
        "queueing the snapshot and report tasks (default 300; 0: no waiting)",
    )


COMMANDS = {
    "dev": cmd_dev,
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "ingest": cmd_ingest,
    "worker": cmd_worker,
    "bench": cmd_bench,
    "demo": cmd_demo,
    "token": cmd_token,
    "export": cmd_export,
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
