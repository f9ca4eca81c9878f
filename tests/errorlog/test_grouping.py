"""Grouping at write time (`record_error`) and its bookkeeping: fingerprints, counts, levels, regressions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from service.core.errors import InvalidInput
from service.core.settings import Settings
from service.errorlog.grouping import fingerprint, template, top_frame
from service.errorlog.records import NewErrorLog, delete_log, record_error, set_group_resolved, update_log
from service.tasks.worker import execute
from tests.errorlog.support import on_db, python_trace, record
from tests.support import rows


def group_of(database_url: str, group_id: int | None) -> dict[str, Any]:
    names = ["level", "sample_message", "top_frame", "occurrences", "users_affected", "first_seen", "last_seen",
             "status", "resolved_at"]  # fmt: skip
    found = rows(database_url, f"SELECT {', '.join(names)} FROM error_groups WHERE id = %s", group_id)
    assert len(found) == 1
    return dict(zip(names, found[0], strict=True))


def test_variable_parts_do_not_split_a_group(database_url: str) -> None:
    messages = [
        "User 42 not found (request 6f1c2b3a-1d2e-4f50-9a8b-0c1d2e3f4a5b, key 'eu-west', 0x7f3a, 2.5s)",
        'User 7 not found (request 0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d, key "us-east", 0xdeadbeef, 10s)',
        "User   123456 not found (request 11111111-2222-3333-4444-555555555555, key 'x', 0x0, 0.1s)",
    ]
    logs = [record(database_url, m, stack_trace=python_trace(line=10 + i)) for i, m in enumerate(messages)]
    assert len({log.group_id for log in logs}) == 1
    assert len({log.fingerprint for log in logs}) == 1
    assert logs[0].fingerprint == fingerprint(messages[0], python_trace())  # the line number is not in the key
    assert template(messages[1]) == "User <n> not found (request <uuid>, key <str>, <hex>, <n>s)"
    # Numbers go, with units and id prefixes; digits inside words (names, versions) stay.
    assert template("utf8 x86 v1.2.3 user_42 after 30s from 10.0.0.1") == "utf8 x86 v1.2.3 user_<n> after <n>s from <n>"
    group = group_of(database_url, logs[0].group_id)
    assert (group["occurrences"], group["sample_message"], group["top_frame"]) == (
        3,
        messages[0],
        "app/users.py:get_user",
    )
    assert rows(database_url, "SELECT count(*) FROM error_groups") == [(1,)]


def test_another_top_frame_or_message_is_another_group(database_url: str) -> None:
    a = record(database_url, "User 1 not found", stack_trace=python_trace("get_user"))
    b = record(database_url, "User 1 not found", stack_trace=python_trace("load_user"))
    c = record(database_url, "User 1 not found", stack_trace=python_trace("get_user", path="app/admin.py"))
    d = record(database_url, "User 1 was deleted", stack_trace=python_trace("get_user"))
    e = record(database_url, "User 1 not found", stack_trace=None)
    assert len({a.group_id, b.group_id, c.group_id, d.group_id, e.group_id}) == 5
    assert top_frame(python_trace("load_user")) == "app/users.py:load_user"
    assert group_of(database_url, e.group_id)["top_frame"] is None


def test_resolve_then_a_new_occurrence_regresses(database_url: str) -> None:
    first = record(database_url, "Payment 12 failed")
    second = record(database_url, "Payment 13 failed")
    assert first.group_id is not None and first.group_id == second.group_id
    resolved = on_db(database_url, lambda conn: set_group_resolved(conn, first.group_id or 0, True))
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    # Every log of the group was resolved with it.
    assert rows(database_url, "SELECT bool_and(is_resolved), bool_and(resolved_at IS NOT NULL) FROM error_logs") == [
        (True, True)
    ]
    again = on_db(database_url, lambda conn: set_group_resolved(conn, first.group_id or 0, True))
    assert again == resolved  # resolving twice changes nothing, not even the time

    third = record(database_url, "Payment 14 failed")
    assert third.group_id == first.group_id
    assert (third.is_resolved, third.resolved_at) == (False, None)
    group = group_of(database_url, first.group_id)
    assert (group["status"], group["occurrences"]) == ("regressed", 3)
    assert group["resolved_at"] == resolved.resolved_at  # when it was resolved is kept
    assert group["last_seen"] == third.created_at

    unresolved = on_db(database_url, lambda conn: set_group_resolved(conn, first.group_id or 0, False))
    assert (unresolved.status, unresolved.resolved_at) == ("unresolved", None)


def test_a_late_log_older_than_the_resolution_does_not_regress(database_url: str) -> None:
    log = record(database_url, "Cache 3 cold")
    on_db(database_url, lambda conn: set_group_resolved(conn, log.group_id or 0, True))
    # Delivered late: it happened before the group was resolved, so it says nothing about the fix.
    late = record(database_url, "Cache 4 cold", created_at=log.created_at - timedelta(minutes=5))
    # Recorded already resolved: not a new open occurrence either.
    record(database_url, "Cache 5 cold", is_resolved=True)
    group = group_of(database_url, log.group_id)
    assert (group["status"], group["occurrences"]) == ("resolved", 3)
    assert group["first_seen"] == late.created_at


def test_users_affected_is_exact(database_url: str) -> None:
    users = [1, 1, 2, None, 3, 2, None]
    logs = [record(database_url, f"Order {n} lost", user_id=user) for n, user in enumerate(users)]
    group_id = logs[0].group_id
    assert (group_of(database_url, group_id)["users_affected"], group_of(database_url, group_id)["occurrences"]) == (
        3,
        7,
    )
    on_db(database_url, lambda conn: delete_log(conn, logs[4].id))  # user 3's only log
    on_db(database_url, lambda conn: delete_log(conn, logs[0].id))  # user 1 has another
    on_db(database_url, lambda conn: delete_log(conn, logs[3].id))  # no user
    group = group_of(database_url, group_id)
    assert (group["users_affected"], group["occurrences"]) == (2, 4)
    # Changing a log's user moves the count: user 1's last log becomes user 4's.
    on_db(database_url, lambda conn: update_log(conn, logs[1].id, {"user_id": 4}))
    assert group_of(database_url, group_id)["users_affected"] == 2
    on_db(database_url, lambda conn: update_log(conn, logs[2].id, {"user_id": 4}))  # user 2 keeps logs[5]
    assert group_of(database_url, group_id)["users_affected"] == 2
    on_db(database_url, lambda conn: update_log(conn, logs[5].id, {"user_id": None}))  # user 2 is gone
    group = group_of(database_url, group_id)
    assert (group["users_affected"], group["occurrences"]) == (1, 4)
    assert (
        group["users_affected"]
        == rows(database_url, "SELECT count(DISTINCT user_id) FROM error_logs WHERE group_id = %s", group_id)[0][0]
    )


def test_concurrent_writers_keep_the_counts_exact(database_url: str) -> None:
    async def writer(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            for i in range(6):
                # 8 writers x 6 logs; users 1..5 repeat across writers, every third log has no user.
                user = None if i % 3 == 0 else (n + i) % 5 + 1
                await record_error(conn, NewErrorLog(level="error", message=f"Job {n}-{i} crashed", user_id=user))

    async def all_writers() -> None:
        await asyncio.gather(*(writer(n) for n in range(8)))

    asyncio.run(all_writers())
    [(occurrences, users)] = rows(database_url, "SELECT occurrences, users_affected FROM error_groups")
    assert occurrences == 48
    assert users == 5


def test_level_escalates_to_the_most_severe_seen(database_url: str) -> None:
    log = record(database_url, "Disk 80% full", level="warning")
    assert group_of(database_url, log.group_id)["level"] == "warning"
    record(database_url, "Disk 95% full", level="critical")
    record(database_url, "Disk 81% full", level="info")
    assert group_of(database_url, log.group_id)["level"] == "critical"


def test_editing_the_message_moves_the_log_and_fixes_both_groups(database_url: str) -> None:
    a1 = record(database_url, "Socket 1 closed", user_id=5)
    a2 = record(database_url, "Socket 2 closed", user_id=6)
    b1 = record(database_url, "Queue 1 full", user_id=5, level="warning")
    moved = on_db(database_url, lambda conn: update_log(conn, a2.id, {"message": "Queue 9 full", "level": "critical"}))
    assert moved.group_id == b1.group_id and moved.fingerprint == b1.fingerprint
    a, b = group_of(database_url, a1.group_id), group_of(database_url, b1.group_id)
    assert (a["occurrences"], a["users_affected"]) == (1, 1)
    assert (b["occurrences"], b["users_affected"], b["level"]) == (2, 2, "critical")
    # Moving the last log out of a group deletes it; the stack trace counts as much as the message.
    last = on_db(database_url, lambda conn: update_log(conn, a1.id, {"stack_trace": python_trace("close")}))
    assert last.group_id != a1.group_id
    assert rows(database_url, "SELECT count(*) FROM error_groups WHERE id = %s", a1.group_id) == [(0,)]
    assert group_of(database_url, last.group_id)["occurrences"] == 1
    # Unchanged text: same group, same counts.
    same = on_db(database_url, lambda conn: update_log(conn, b1.id, {"url": "/api/queue/"}))
    assert same.group_id == b1.group_id
    assert group_of(database_url, b1.group_id)["occurrences"] == 2


def test_deleting_the_last_log_deletes_its_group(database_url: str) -> None:
    log = record(database_url, "Only once")
    on_db(database_url, lambda conn: delete_log(conn, log.id))
    assert rows(database_url, "SELECT count(*) FROM error_groups") == [(0,)]


def test_periodic_grouping_joins_the_groups_written_at_record_time(settings: Settings, database_url: str) -> None:
    recorded = record(database_url, "User 1 not found", user_id=1)
    with psycopg.connect(database_url) as conn:  # written without a group (e.g. by an older client)
        conn.execute(
            "INSERT INTO error_logs (level, message, stack_trace, user_id) VALUES "
            "('critical', 'User 2 not found', %s, 1), ('error', 'User 3 not found', %s, 2)",
            (python_trace(), python_trace()),
        )
    assert execute(settings, "process_error_logs").details == {"logs_grouped": 2, "groups_touched": 1}
    group = group_of(database_url, recorded.group_id)
    assert (group["occurrences"], group["users_affected"], group["level"]) == (3, 2, "critical")
    assert rows(database_url, "SELECT count(*) FROM error_logs WHERE group_id = %s", recorded.group_id) == [(3,)]


def test_counted_by_level_and_stored_as_sent(database_url: str) -> None:
    def logged() -> float:
        return REGISTRY.get_sample_value("analytics_errors_logged_total", {"level": "critical"}) or 0.0

    before = logged()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    log = record(
        database_url, "Bad\x00byte", level="critical", user_id=9, url="/x", method="POST", ip_address="2001:DB8::1",
        user_agent="curl/8", extra_data={"k\x00": ["v\x00", 1]}, created_at=when,
    )  # fmt: skip
    assert logged() == before + 1
    assert log.message == "Bad\ufffdbyte"  # PostgreSQL text cannot hold NUL
    assert log.extra_data == {"k\ufffd": ["v\ufffd", 1]}
    assert (log.ip_address, log.created_at, log.user_id, log.method) == ("2001:db8::1", when, 9, "POST")
    assert (log.is_resolved, log.resolved_at) == (False, None)


@pytest.mark.parametrize("address", ["not-an-ip", "300.1.1.1", "10.0.0.0/8", "fe80::1%eth0", "testclient"])
def test_a_bad_ip_address_is_refused(database_url: str, address: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        record(database_url, "x", ip_address=address)
    assert [e.field for e in caught.value.errors] == ["ip_address"]
    assert rows(database_url, "SELECT count(*) FROM error_logs") == [(0,)]


def test_concurrent_moves_deletes_and_resolutions_keep_the_counts_exact(database_url: str) -> None:
    """Edits moving logs between two groups, deletions and resolutions of both groups, all at once: every writer
    locks groups before logs, so none deadlocks, and the counts match the logs left."""
    logs = [record(database_url, f"{'Cart' if i % 2 else 'Queue'} {i} stuck", user_id=i % 3 + 1) for i in range(12)]
    groups = sorted({log.group_id or 0 for log in logs})

    async def mover(conn: psycopg.AsyncConnection[Any], n: int) -> None:
        for round_ in range(4):
            for log in logs[n::4][:2]:
                await update_log(conn, log.id, {"message": f"{'Queue' if (round_ + log.id) % 2 else 'Cart'} 1 stuck"})

    async def resolver(conn: psycopg.AsyncConnection[Any]) -> None:
        for round_ in range(8):
            await set_group_resolved(conn, groups[round_ % 2], round_ % 4 < 2)

    async def deleter(conn: psycopg.AsyncConnection[Any]) -> None:
        for log in logs[2::4]:
            await delete_log(conn, log.id)

    async def connected(work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]) -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await work(conn)

    async def everyone() -> None:
        jobs = [lambda c, n=n: mover(c, n) for n in (0, 1, 3)] + [resolver, deleter]
        await asyncio.gather(*(connected(job) for job in jobs))

    asyncio.run(everyone())
    counted = rows(
        database_url,
        "SELECT g.id, g.occurrences, g.users_affected, count(l.id), count(DISTINCT l.user_id) "
        "FROM error_groups g LEFT JOIN error_logs l ON l.group_id = g.id GROUP BY g.id ORDER BY g.id",
    )
    assert counted and all(row[1:3] == row[3:5] for row in counted), counted
    assert sum(row[1] for row in counted) == 12 - 3
