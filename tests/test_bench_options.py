"""`analytics bench queries --peer clickhouse --growth`: the options, the two sizes, the table cells, and the
peer's figures on a handful of events."""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service import cli
from service.core.windows import Window
from service.tools.bench import clickhouse
from service.tools.bench.harness import BenchError, OtherLoad
from service.tools.bench.options import Options
from service.tools.bench.queries import (
    ENDPOINTS,
    GROWTH_SMALL,
    SESSION_GAP,
    Result,
    _cells,
    growth_options,
    growth_table,
)

REPORT = next(e for e in ENDPOINTS if e.goal_p95 and e.peer_goal)
REALTIME = next(e for e in ENDPOINTS if e.raw is None)


def bench_options(*argv: str) -> Options:
    """The options `analytics bench queries ARGV` runs with."""
    args = cli.parser().parse_args(["bench", "queries", *argv])
    return Options.of(args.target, {f.name: getattr(args, f.name) for f in dataclasses.fields(Options)})


def test_no_peer_and_one_size_by_default() -> None:
    options = bench_options()
    assert (options.peer, options.growth, options.events) == ("", False, 10_000_000)


def test_peer_and_growth_on_the_command_line() -> None:
    options = bench_options("--peer", "clickhouse", "--growth", "--events", "200_000")
    assert (options.peer, options.growth, options.events) == ("clickhouse", True, 200_000)


@pytest.mark.parametrize("argv", [["--peer", "duckdb"], ["--peer"], ["--growth", "yes"], ["--samples", "0"]])
def test_bad_values_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_options(*argv)
    assert "error:" in capsys.readouterr().err


def test_raw_twins_are_timed_on_every_timed_community_by_default() -> None:
    assert bench_options().raw_count == 200
    assert bench_options("--samples", "50", "--raw-samples", "20").raw_count == 20
    assert bench_options("--samples", "10", "--raw-samples", "20").raw_count == 10


def test_the_help_names_no_default_of_the_peer_and_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["bench", "--help"])
    text = capsys.readouterr().out
    assert "--peer {clickhouse}" in text
    assert "(default False)" not in text
    assert "(default )" not in text


def test_growth_starts_at_a_million_events_with_the_geo_events_scaled_alike() -> None:
    small = growth_options(bench_options("--growth"))
    assert (small.events, small.geo_events) == (GROWTH_SMALL, 100_000)


def test_growth_of_a_small_run_starts_at_a_tenth() -> None:
    options = bench_options("--growth", "--events", "200000", "--geo-events", "20000", "--communities", "50")
    small = growth_options(options)
    assert (small.events, small.geo_events, small.communities, small.growth) == (20_000, 2_000, 50, True)
    assert growth_options(dataclasses.replace(options, events=GROWTH_SMALL)).events == GROWTH_SMALL // 10


def result(endpoint: Any = REPORT, raw_latencies: list[float] | None = None,
           peer_latencies: list[float] | None = None) -> Result:  # fmt: skip
    """A result with the endpoint's latencies 10 ms, and these others."""
    return Result(endpoint, [0.010] * 20, raw_latencies or [], peer_latencies=peer_latencies or [])


def test_cells_without_a_peer() -> None:
    cells = _cells(result(raw_latencies=[0.5] * 5), OtherLoad())
    assert cells[:6] == [REPORT.label, "10 ms", "10 ms", "500 ms", "500 ms", "50x"]
    assert len(cells) == 8
    assert cells[-2:] == ["p95 < raw, < 10 ms", "MISSED"]  # 50x faster than raw, but 10 ms is not below 10 ms
    faster = Result(REPORT, [0.009] * 20, [0.5] * 5)
    assert _cells(faster, OtherLoad())[-1] == "met"
    assert _cells(result(raw_latencies=[0.005] * 5), OtherLoad())[-1] == "MISSED"  # slower than raw


def test_cells_with_a_peer() -> None:
    cells = _cells(result(raw_latencies=[0.5] * 5, peer_latencies=[0.020] * 30), OtherLoad(), peer=True)
    assert cells[6:9] == ["20 ms", "20 ms", "2.0x"]
    assert len(cells) == 11


def test_cells_of_an_endpoint_the_peer_has_no_twin_for() -> None:
    cells = _cells(result(REALTIME), OtherLoad(), peer=True)
    assert cells[3:9] == ["-"] * 6
    assert cells[-1] == ""


def test_a_peer_mismatch_marks_the_row() -> None:
    r = result(raw_latencies=[0.001] * 5, peer_latencies=[0.020] * 5)
    r.peer_mismatches.append("metrics: endpoint 1, clickhouse 2")
    assert _cells(r, OtherLoad(), peer=True)[-1] == "MISSED MISMATCH"


def test_growth_table() -> None:
    small, large = Options(events=20_000, geo_events=2_000), Options(events=200_000, geo_events=20_000)
    before = [Result(REPORT, latencies=[0.010] * 5), Result(REALTIME, latencies=[0.002] * 5)]
    after = [Result(REPORT, latencies=[0.014] * 5), Result(REALTIME, latencies=[0.004] * 5)]
    lines = growth_table(small, large, before, after).splitlines()
    assert "20,000 and at 200,000 activity events (geo events 2,000 and 20,000)" in lines[0]
    assert lines[1].split() == ["endpoint", "p95", "at", "20,000", "p95", "at", "200,000", "large/small", "goal"]
    assert lines[2].split()[-6:] == ["14", "ms", "1.40x", "<=", "1.5x", "met"]
    assert lines[3].split()[-4:] == ["2.00x", "<=", "1.5x", "MISSED"]


def test_the_peer_without_chdb_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "chdb", None)  # import chdb raises ImportError
    with pytest.raises(BenchError, match=r"pip install -e '\.\[bench\]'"):
        clickhouse.require()


# --- the peer's figures on a handful of events ----------------------------------------------------------------

DAY = datetime(2026, 1, 10, tzinfo=UTC)
WINDOW = Window(start=DAY, end=datetime(2026, 1, 11, tzinfo=UTC), previous_start=datetime(2026, 1, 9, tzinfo=UTC))
EVENTS = [  # (time, community, user, type)
    ("2026-01-09 05:00:00", 1, 7, "view"),  # member 7 returns from the previous window
    ("2026-01-09 23:50:00", 1, 8, "view"),  # member 8's visit starts before the window: not counted as one in it
    ("2026-01-10 00:10:00", 1, 8, "like"),
    ("2026-01-10 01:00:00", 1, 7, "view"),  # a visit of 30 minutes: a pause of exactly the gap is inside a visit
    ("2026-01-10 01:30:00", 1, 7, "comment"),
    ("2026-01-10 02:00:00.000001", 1, 7, "view"),  # a new visit of one event, 0 s
    ("2026-01-10 03:00:00", 1, None, "view"),  # an anonymous view
    ("2026-01-10 04:00:00", 2, 9, "join"),
]


@pytest.fixture
def peer(tmp_path: Path) -> Any:
    import chdb  # the bench extra, installed with the dev one

    session = chdb.session.Session(str(tmp_path / "clickhouse"))
    try:
        clickhouse.create(session, "activity_events")
        values = ", ".join(
            f"('{at}', generateUUIDv4(), {community}, {'NULL' if user is None else user}, '{kind}', '{{}}')"
            for at, community, user, kind in EVENTS
        )
        session.query(
            f"INSERT INTO activity_events (time, event_id, community_id, user_id, activity_type, metadata) "
            f"VALUES {values}"
        )
        session.query("SET output_format_json_quote_64bit_integers = 0")
        limits = clickhouse.Limits(SESSION_GAP, 100, 10)
        yield clickhouse.ClickHouse(session, lambda community, window: 4, limits, "test", {}, 0.0)
    finally:
        session.close()


def test_the_peers_report(peer: Any) -> None:
    metrics = clickhouse.report(peer, 1, WINDOW)["metrics"]
    assert metrics == {
        "total_views": 3,
        "unique_visitors": 2,
        "peak_online_members": 4,
        "average_session_duration": 15.0,
        "member_retention": 100.0,
    }


def test_the_peers_communities_today(peer: Any) -> None:
    assert clickhouse.today(peer, None, WINDOW) == {"rows": [[1, 5, 3, 0, 2], [2, 1, 0, 1, 1]]}


def test_the_peers_activity_patterns(peer: Any) -> None:
    figures = clickhouse.patterns(peer, 1, WINDOW)
    assert [h["events"] for h in figures["hourly"][:4]] == [1, 2, 1, 1]
    assert figures["daily"][5] == {"weekday": 5, "name": "Saturday", "events": 5}  # 2026-01-10
    assert figures["weekly"] == [{"week_start": "2026-01-05", "events": 5}]
    assert figures["peak_hours"] == [1, 0, 2]
