"""`GET /api/export/{dataset}/`: 100,000 rows out as CSV and as Parquet, compared with the table."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from litestar.testing import TestClient

from service.cli import main
from service.core.settings import Settings
from tests.support import act, bearer, rows, store

ROWS = 100_000
COLUMNS = "time, event_id, community_id, user_id, activity_type, session_id, duration, section, metadata"


@pytest.fixture
def stored(database_url: str) -> list[tuple[Any, ...]]:
    """100,000 activity events over the last three days (nulls, JSON and text with commas and quotes among
    them); the table's rows, oldest first."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    kinds = ("view", "like", "comment", "post", "session_start")
    records = [
        act(
            now - timedelta(seconds=rng.randrange(3 * 86400)),
            rng.choice((1, 2, None)),
            rng.choice((None, rng.randrange(1, 10**12))),
            rng.choice(kinds),
            session_id=rng.choice((None, f"s-{rng.randrange(10**6)}")),
            duration=rng.choice((None, rng.random() * 600)),
            section=rng.choice((None, 'posts, "pinned"', "chat\nlog")),
            metadata=rng.choice(({}, {"device": "ios", "n": rng.randrange(100), "tags": ["a", "b,c"]})),
        )
        for _ in range(ROWS)
    ]
    store(database_url, records)
    return rows(database_url, f"SELECT {COLUMNS} FROM activity_events ORDER BY time, event_id")


def export(client: TestClient[Any], query: str) -> Any:
    today = datetime.now(UTC).date()
    return client.get(f"/api/export/activity/?date_from={today - timedelta(days=3)}&date_to={today}{query}")


def test_csv_round_trip(client: TestClient[Any], stored: list[tuple[Any, ...]]) -> None:
    response = export(client, "")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="activity_')
    reader = csv.reader(io.StringIO(response.text))
    assert next(reader) == COLUMNS.split(", ")
    exported = sorted(reader, key=lambda line: (datetime.fromisoformat(line[0]), uuid.UUID(line[1])))
    assert len(exported) == ROWS
    for line, row in zip(exported, stored, strict=True):
        time_, event_id, community, user, kind, session, duration, section, metadata = line
        assert datetime.fromisoformat(time_) == row[0]
        assert uuid.UUID(event_id) == row[1]
        assert (int(community) if community else None, int(user) if user else None) == row[2:4]
        assert (kind, session or None, section or None) == (row[4], row[5], row[7])
        assert (float(duration) if duration else None) == pytest.approx(row[6])
        assert json.loads(metadata) == row[8]


def test_parquet_round_trip_with_its_types(client: TestClient[Any], stored: list[tuple[Any, ...]]) -> None:
    response = export(client, "&format=parquet")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    assert response.headers["content-disposition"].endswith('.parquet"')
    file = pq.ParquetFile(io.BytesIO(response.content))
    assert file.metadata.num_row_groups == 2  # 50,000 rows each: written as they were read
    table = file.read()
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("community_id").type == pa.int64()
    assert table.schema.field("duration").type == pa.float64()
    assert table.schema.field("metadata").type == pa.string()  # JSON as text
    exported = sorted(table.to_pylist(), key=lambda item: (item["time"], uuid.UUID(item["event_id"])))
    assert len(exported) == ROWS
    for item, row in zip(exported, stored, strict=True):
        assert item["time"] == row[0]
        assert uuid.UUID(item["event_id"]) == row[1]
        assert (item["community_id"], item["user_id"], item["activity_type"], item["session_id"]) == row[2:6]
        assert item["duration"] == pytest.approx(row[6]) and item["section"] == row[7]
        assert json.loads(item["metadata"]) == row[8]


def test_one_community_and_an_empty_range(client: TestClient[Any], stored: list[tuple[Any, ...]]) -> None:
    response = export(client, "&community=2")
    exported = list(csv.reader(io.StringIO(response.text)))[1:]
    assert len(exported) == sum(1 for r in stored if r[2] == 2) and {line[2] for line in exported} == {"2"}
    empty = client.get("/api/export/activity/?date_from=2020-01-01&date_to=2020-01-02&format=parquet")
    assert empty.status_code == 400  # before what retention keeps: said, not an empty file


def test_every_dataset_exports(client: TestClient[Any], settings: Settings) -> None:
    for dataset in ("activity", "geo", "system-metrics", "errors", "activity-daily", "geo-daily", "members-daily"):
        for format in ("csv", "parquet"):
            response = client.get(f"/api/export/{dataset}/?format={format}")
            assert response.status_code == 200, (dataset, format, response.text)
            if format == "csv":
                assert response.text.count("\n") == 1  # the header line
            else:
                assert pq.read_table(io.BytesIO(response.content)).num_rows == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("/api/export/nothing/", "dataset"),
        ("/api/export/activity/?date_from=2026-11-10&date_to=2026-11-01", "date_to"),
        ("/api/export/activity/?date_from=1999-01-01", "date_from"),
        ("/api/export/activity/?date_from=yesterday", "date_from"),
        ("/api/export/errors/?community=3", "community"),
        ("/api/export/activity/?format=xlsx", "format"),
        ("/api/export/activity/?community=0", "community"),
    ],
)
def test_bad_requests_name_the_parameter(client: TestClient[Any], query: str, field: str) -> None:
    response = client.get(query)
    assert response.status_code == 400, response.text
    assert field in {error["field"] for error in response.json()["errors"]}, response.json()


def test_staff_only(client: TestClient[Any], settings: Settings) -> None:
    member = client.get("/api/export/activity/", headers=bearer(settings, "9"))
    assert member.status_code == 403
    moderator = client.get("/api/export/activity/", headers=bearer(settings, "9", moderated=[1]))
    assert moderator.status_code == 403


def test_the_command_writes_the_same_rows_with_a_progress_line(
    stored: list[tuple[Any, ...]],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    today = datetime.now(UTC).date()
    out = tmp_path / "activity.parquet"
    argv = ["export", "activity", "--from", str(today - timedelta(days=3)), "--format", "parquet", "--out", str(out)]
    assert main(argv) == 0
    table = pq.read_table(out)
    assert table.num_rows == ROWS
    assert sorted(uuid.UUID(v) for v in table.column("event_id").to_pylist()) == sorted(r[1] for r in stored)
    printed = capsys.readouterr().err
    assert "export 100% 100,000 rows" in printed and f"{out}: 100,000 rows" in printed
    csv_out = tmp_path / "activity.csv"
    assert main(["export", "activity", "--from", str(today - timedelta(days=3)), "--out", str(csv_out)]) == 0
    with csv_out.open(newline="") as file:
        assert len(list(csv.reader(file))) == ROWS + 1


def test_the_command_refuses_what_the_endpoint_refuses(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["export", "errors", "--community", "3", "--out", str(tmp_path / "x.csv")]) == 2
    assert "analytics export: community: `errors` is not kept per community" in capsys.readouterr().err
