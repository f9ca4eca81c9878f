"""`/api/errors/` and `/api/error-groups/`: CRUD, filters, ordering, pages, resolving, and who may do what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from service.core.settings import Settings
from service.errorlog.grouping import fingerprint
from tests.errorlog.support import python_trace, record
from tests.support import bearer, rows

Client = TestClient[Any]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

FULL = {
    "user_id": 7, "level": "critical", "message": "Order 12 lost", "stack_trace": python_trace("save_order"),
    "url": "https://shop.example/orders/12", "method": "POST", "ip_address": "203.0.113.9",
    "user_agent": "Mozilla/5.0", "extra_data": {"order": 12, "tags": ["a"]}, "is_resolved": False,
}  # fmt: skip


def errors_of(response: Any) -> dict[str, str]:
    """The 400 body's problems, field -> message."""
    assert response.status_code == 400, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["results"]]


def group_row(database_url: str, group_id: int) -> tuple[Any, ...]:
    [row] = rows(database_url, "SELECT occurrences, users_affected, level, status FROM error_groups WHERE id = %s",
                 group_id)  # fmt: skip
    return row


def test_create_and_get(client: Client, database_url: str) -> None:
    response = client.post("/api/errors/", json=FULL)
    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in FULL} == FULL
    assert created["fingerprint"] == fingerprint(FULL["message"], FULL["stack_trace"])
    assert created["resolved_at"] is None and created["group_id"] is not None
    assert abs(datetime.fromisoformat(created["created_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert client.get(f"/api/errors/{created['id']}/").json() == created
    assert group_row(database_url, created["group_id"]) == (1, 1, "critical", "unresolved")

    minimal = client.post("/api/errors/", json={"level": "info", "message": "Hello", "ip_address": " ::FFFF:1.2.3.4"})
    assert minimal.status_code == 201, minimal.text
    body = minimal.json()
    assert (body["user_id"], body["stack_trace"], body["url"], body["method"], body["user_agent"]) == (None,) * 5
    assert (body["extra_data"], body["is_resolved"], body["ip_address"]) == ({}, False, "::ffff:1.2.3.4")
    resolved = client.post("/api/errors/", json={"level": "info", "message": "Old news", "is_resolved": True}).json()
    assert resolved["is_resolved"] and resolved["resolved_at"] is not None


def test_bad_bodies_are_400s_naming_the_field(client: Client, database_url: str) -> None:
    assert errors_of(client.post("/api/errors/", json={"message": "x"})) == {"level": "required field is missing"}
    assert errors_of(client.post("/api/errors/", json={**FULL, "id": 3, "fingerprint": "f", "colour": "red"})) == {
        "id": "read-only field", "fingerprint": "read-only field", "colour": "unknown field",
    }  # fmt: skip
    for field, value in [
        ("level", "fatal"), ("method", "post"), ("user_id", 0), ("message", ""), ("extra_data", [1]),
        ("is_resolved", "yes"), ("ip_address", "999.1.1.1"), ("ip_address", "10.0.0.0/8"), ("user_id", 2**63),
    ]:  # fmt: skip
        assert list(errors_of(client.post("/api/errors/", json={**FULL, field: value}))) == [field], (field, value)
    assert errors_of(client.post("/api/errors/", content=b"[1]")) == {"body": "Expected `object`, got `array`"}
    assert "body" in errors_of(client.post("/api/errors/", content=b"{"))
    assert rows(database_url, "SELECT count(*) FROM error_logs") == [(0,)]


def test_no_unique_key_so_no_conflict(client: Client, database_url: str) -> None:
    """409 does not apply to error logs: they have no unique key. The same error sent twice is two occurrences
    of one group, each its own log."""
    first, second = (client.post("/api/errors/", json=FULL) for _ in range(2))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert first.json()["group_id"] == second.json()["group_id"]
    assert group_row(database_url, first.json()["group_id"])[:2] == (2, 1)


def test_filters(client: Client, database_url: str) -> None:
    a = record(database_url, "Cart 1 empty", level="warning", user_id=1, created_at=T0)
    b = record(database_url, "Cart 2 empty", level="error", user_id=2, created_at=T0 + timedelta(hours=1))
    c = record(database_url, "Payment 3 declined", level="error", user_id=1, created_at=T0 + timedelta(hours=2))
    d = record(database_url, "Payment 4 declined", level="critical", created_at=T0 + timedelta(hours=3))
    client.post(f"/api/errors/{b.id}/resolve/")
    assert sorted(ids(client.get("/api/errors/"))) == [a.id, b.id, c.id, d.id]
    assert ids(client.get("/api/errors/?level=error&ordering=id")) == [b.id, c.id]
    assert ids(client.get("/api/errors/?is_resolved=true")) == [b.id]
    assert ids(client.get("/api/errors/?is_resolved=false&ordering=id")) == [a.id, c.id, d.id]
    assert ids(client.get("/api/errors/?user=1&ordering=id")) == [a.id, c.id]
    assert ids(client.get(f"/api/errors/?group={c.group_id}&ordering=id")) == [c.id, d.id]
    since = (T0 + timedelta(hours=1)).isoformat()
    until = (T0 + timedelta(hours=2)).isoformat()
    assert ids(client.get("/api/errors/", params={"created_since": since, "ordering": "id"})) == [b.id, c.id, d.id]
    assert ids(client.get("/api/errors/", params={"created_until": until, "ordering": "id"})) == [a.id, b.id, c.id]
    both = {"created_since": since, "created_until": until, "ordering": "id"}
    assert ids(client.get("/api/errors/", params=both)) == [b.id, c.id]
    # A time without offset is UTC.
    assert ids(client.get("/api/errors/", params={"created_since": "2026-03-01T14:30:00"})) == [d.id]
    assert ids(client.get("/api/errors/?level=error&user=2&is_resolved=true")) == [b.id]

    assert list(errors_of(client.get("/api/errors/?level=fatal"))) == ["level"]
    assert list(errors_of(client.get("/api/errors/?is_resolved=maybe"))) == ["is_resolved"]
    assert list(errors_of(client.get("/api/errors/?user=0"))) == ["user"]
    assert list(errors_of(client.get("/api/errors/?group=x"))) == ["group"]
    assert list(errors_of(client.get("/api/errors/?created_since=yesterday"))) == ["created_since"]
    assert list(errors_of(client.get("/api/errors/", params={"created_since": until, "created_until": since}))) == [
        "created_until"
    ]


def test_ordering(client: Client, database_url: str) -> None:
    # Created in this order; levels chosen so that alphabetical and severity order differ.
    levels = ["warning", "critical", "debug", "error", "info", "error"]
    logs = [record(database_url, f"Thing {i} broke", level=level, created_at=T0 - timedelta(minutes=i))
            for i, level in enumerate(levels)]  # fmt: skip
    by_id = [log.id for log in logs]
    assert ids(client.get("/api/errors/")) == by_id  # default -created_at: the newest (smallest i) first
    assert ids(client.get("/api/errors/?ordering=-created_at")) == by_id
    assert ids(client.get("/api/errors/?ordering=created_at")) == by_id[::-1]
    assert ids(client.get("/api/errors/?ordering=id")) == by_id
    assert ids(client.get("/api/errors/?ordering=-id")) == by_id[::-1]
    # By severity, ties by id in the same direction.
    severity = [by_id[2], by_id[4], by_id[0], by_id[3], by_id[5], by_id[1]]
    assert ids(client.get("/api/errors/?ordering=level")) == severity
    assert ids(client.get("/api/errors/?ordering=-level")) == severity[::-1]
    assert errors_of(client.get("/api/errors/?ordering=message"))["ordering"].startswith("unknown field 'message'")


def test_pages(client: Client, database_url: str) -> None:
    logs = [record(database_url, f"Job {i} failed", level="error", created_at=T0 + timedelta(minutes=i))
            for i in range(5)]  # fmt: skip
    newest_first = [log.id for log in reversed(logs)]
    first = client.get("/api/errors/?page_size=2&level=error").json()
    assert first["count"] == 5 and [r["id"] for r in first["results"]] == newest_first[:2]
    assert first["previous"] is None
    assert first["next"] == "/api/errors/?page_size=2&level=error&page=2"
    second = client.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == newest_first[2:4]
    assert second["previous"] == "/api/errors/?page_size=2&level=error&page=1"
    third = client.get(second["next"]).json()
    assert [r["id"] for r in third["results"]] == newest_first[4:] and third["next"] is None
    past = client.get("/api/errors/?page_size=2&page=9").json()
    assert (past["count"], past["results"], past["next"]) == (5, [], None)
    assert past["previous"] == "/api/errors/?page_size=2&page=3"
    assert list(errors_of(client.get("/api/errors/?page=0"))) == ["page"]
    assert list(errors_of(client.get("/api/errors/?page_size=501"))) == ["page_size"]


def test_put_replaces_and_regroups(client: Client, database_url: str) -> None:
    old = client.post("/api/errors/", json=FULL).json()
    other = client.post("/api/errors/", json={**FULL, "user_id": 8}).json()
    new_values = {
        "user_id": 9, "level": "warning", "message": "Stock 3 low", "stack_trace": None, "url": None, "method": None,
        "ip_address": None, "user_agent": None, "extra_data": {}, "is_resolved": True,
    }  # fmt: skip
    response = client.put(f"/api/errors/{old['id']}/", json=new_values)
    assert response.status_code == 200, response.text
    replaced = response.json()
    assert {k: replaced[k] for k in new_values} == new_values
    assert (replaced["id"], replaced["created_at"]) == (old["id"], old["created_at"])
    assert replaced["resolved_at"] is not None
    assert replaced["fingerprint"] == fingerprint("Stock 3 low", None) and replaced["group_id"] != old["group_id"]
    assert group_row(database_url, old["group_id"])[:2] == (1, 1)  # only `other` (user 8) left
    assert group_row(database_url, replaced["group_id"]) == (1, 1, "warning", "unresolved")
    assert client.get(f"/api/errors/{other['id']}/").json()["group_id"] == old["group_id"]

    missing = errors_of(client.put(f"/api/errors/{old['id']}/", json={"level": "info", "message": "x"}))
    assert set(missing) == set(new_values) - {"level", "message"}
    assert set(missing.values()) == {"required field is missing"}
    read_only = errors_of(client.put(f"/api/errors/{old['id']}/", json={**new_values, "created_at": T0.isoformat()}))
    assert read_only == {"created_at": "read-only field"}
    assert client.get(f"/api/errors/{old['id']}/").json() == replaced  # nothing changed by the refused ones


def test_patch_changes_what_is_sent(client: Client, database_url: str) -> None:
    log = client.post("/api/errors/", json=FULL).json()
    mate = client.post("/api/errors/", json={**FULL, "message": "Order 13 lost", "user_id": 8}).json()
    response = client.patch(f"/api/errors/{log['id']}/", json={"url": None, "extra_data": {"seen": True}})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched == {**log, "url": None, "extra_data": {"seen": True}}

    resolved = client.patch(f"/api/errors/{log['id']}/", json={"is_resolved": True}).json()
    assert resolved["is_resolved"] and resolved["resolved_at"] is not None
    again = client.patch(f"/api/errors/{log['id']}/", json={"is_resolved": True, "level": "error"}).json()
    assert again["resolved_at"] == resolved["resolved_at"]  # resolved already: the time stays
    reopened = client.patch(f"/api/errors/{log['id']}/", json={"is_resolved": False}).json()
    assert (reopened["is_resolved"], reopened["resolved_at"]) == (False, None)

    # A new message means a new fingerprint: the log moves, both groups' counts follow.
    moved = client.patch(f"/api/errors/{log['id']}/", json={"message": "Invoice 5 missing"}).json()
    assert moved["fingerprint"] == fingerprint("Invoice 5 missing", FULL["stack_trace"])
    assert moved["group_id"] != log["group_id"]
    assert group_row(database_url, log["group_id"])[:2] == (1, 1)
    assert group_row(database_url, moved["group_id"])[:2] == (1, 1)
    assert client.get(f"/api/errors/{mate['id']}/").json()["group_id"] == log["group_id"]
    # So does a new stack trace; the emptied group is gone.
    traced = client.patch(f"/api/errors/{mate['id']}/", json={"stack_trace": python_trace("charge")}).json()
    assert traced["group_id"] not in (log["group_id"], moved["group_id"])
    assert rows(database_url, "SELECT count(*) FROM error_groups WHERE id = %s", log["group_id"]) == [(0,)]

    assert errors_of(client.patch(f"/api/errors/{log['id']}/", json={"level": None})) == {
        "level": "Expected `str`, got `null`"
    }
    assert errors_of(client.patch(f"/api/errors/{log['id']}/", json={"group_id": 1})) == {"group_id": "read-only field"}
    assert errors_of(client.patch(f"/api/errors/{log['id']}/", json={"ip_address": "nope"})).keys() == {"ip_address"}


def test_delete(client: Client, database_url: str) -> None:
    first = client.post("/api/errors/", json=FULL).json()
    second = client.post("/api/errors/", json={**FULL, "user_id": 8}).json()
    assert group_row(database_url, first["group_id"])[:2] == (2, 2)
    response = client.delete(f"/api/errors/{second['id']}/")
    assert (response.status_code, response.content) == (204, b"")
    assert client.get(f"/api/errors/{second['id']}/").status_code == 404
    assert group_row(database_url, first["group_id"])[:2] == (1, 1)
    assert client.delete(f"/api/errors/{second['id']}/").status_code == 404


@pytest.mark.parametrize("log_id", [999, 2**63, 2**70])
def test_unknown_ids_are_404(client: Client, log_id: int) -> None:
    for response in [
        client.get(f"/api/errors/{log_id}/"), client.put(f"/api/errors/{log_id}/", json={**FULL}),
        client.patch(f"/api/errors/{log_id}/", json={"level": "info"}), client.delete(f"/api/errors/{log_id}/"),
        client.post(f"/api/errors/{log_id}/resolve/"), client.post(f"/api/errors/{log_id}/unresolve/"),
        client.get(f"/api/error-groups/{log_id}/"), client.post(f"/api/error-groups/{log_id}/resolve/"),
        client.post(f"/api/error-groups/{log_id}/unresolve/"),
    ]:  # fmt: skip
        assert response.status_code == 404, (response.request.method, response.request.url, response.text)
        assert response.json()["detail"].startswith("No error ")


def test_resolve_and_unresolve_one_log(client: Client) -> None:
    log = client.post("/api/errors/", json=FULL).json()
    first = client.post(f"/api/errors/{log['id']}/resolve/")
    assert first.status_code == 200, first.text
    assert first.json()["is_resolved"] and first.json()["resolved_at"] is not None
    second = client.post(f"/api/errors/{log['id']}/resolve/")
    assert (second.status_code, second.json()) == (200, first.json())  # idempotent
    reopened = client.post(f"/api/errors/{log['id']}/unresolve/")
    assert reopened.status_code == 200
    assert reopened.json() == {**first.json(), "is_resolved": False, "resolved_at": None}
    assert client.post(f"/api/errors/{log['id']}/unresolve/").json() == reopened.json()


def test_groups_list_filters_and_ordering(client: Client, database_url: str) -> None:
    # Group a: 3 occurrences of user 1, error; b: 2 occurrences of users 2 and 3, critical, the oldest;
    # c: 1 occurrence without a user, warning, the newest, resolved.
    a = [record(database_url, f"Cart {i} empty", user_id=1, created_at=T0 + timedelta(hours=i)) for i in range(3)]
    b = [record(database_url, f"Pay {i} failed", level="critical", user_id=2 + i, created_at=T0 - timedelta(hours=i))
         for i in range(2)]  # fmt: skip
    c = record(database_url, "Disk 9 full", level="warning", created_at=T0 + timedelta(hours=5))
    ga, gb, gc = a[0].group_id, b[0].group_id, c.group_id
    assert client.post(f"/api/error-groups/{gc}/resolve/").status_code == 200

    listed = client.get("/api/error-groups/").json()
    assert listed["count"] == 3
    assert [g["id"] for g in listed["results"]] == [gc, ga, gb]  # default: last seen, newest first
    first = {g["id"]: g for g in listed["results"]}[ga]
    assert (first["occurrences"], first["users_affected"], first["level"], first["status"]) == (
        3,
        1,
        "error",
        "unresolved",
    )
    assert first["sample_message"] == "Cart 0 empty"
    seen = (datetime.fromisoformat(first["first_seen"]), datetime.fromisoformat(first["last_seen"]))
    assert seen == (T0, T0 + timedelta(hours=2))
    assert ids(client.get("/api/error-groups/?ordering=occurrences")) == [gc, gb, ga]
    assert ids(client.get("/api/error-groups/?ordering=-occurrences")) == [ga, gb, gc]
    assert ids(client.get("/api/error-groups/?ordering=-users_affected")) == [gb, ga, gc]
    assert ids(client.get("/api/error-groups/?ordering=first_seen")) == [gb, ga, gc]
    assert ids(client.get("/api/error-groups/?ordering=last_seen")) == [gb, ga, gc]
    assert ids(client.get("/api/error-groups/?ordering=-id")) == sorted([ga, gb, gc], reverse=True)
    assert ids(client.get("/api/error-groups/?status=resolved")) == [gc]
    assert ids(client.get("/api/error-groups/?status=unresolved&ordering=id")) == sorted([ga, gb])
    assert ids(client.get("/api/error-groups/?level=critical")) == [gb]
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=4)
    assert ids(client.get("/api/error-groups/", params={"seen_since": since.isoformat()})) == [gc, ga]
    assert ids(client.get("/api/error-groups/", params={"seen_until": until.isoformat()})) == [ga, gb]
    assert ids(client.get("/api/error-groups/", params={"seen_since": since.isoformat(),
                                                        "seen_until": until.isoformat()})) == [ga]  # fmt: skip
    page = client.get("/api/error-groups/?page_size=1&page=2").json()
    assert (page["count"], [g["id"] for g in page["results"]]) == (3, [ga])
    assert page["next"] == "/api/error-groups/?page_size=1&page=3"

    assert list(errors_of(client.get("/api/error-groups/?status=closed"))) == ["status"]
    assert list(errors_of(client.get("/api/error-groups/?level=loud"))) == ["level"]
    assert list(errors_of(client.get("/api/error-groups/?ordering=level"))) == ["ordering"]
    backwards = {"seen_since": until.isoformat(), "seen_until": since.isoformat()}
    assert list(errors_of(client.get("/api/error-groups/", params=backwards))) == ["seen_until"]


def test_group_detail_shows_recent_logs(client: Client, database_url: str) -> None:
    logs = [record(database_url, f"Cart {i} empty", created_at=T0 + timedelta(minutes=i)) for i in range(4)]
    group = client.get(f"/api/error-groups/{logs[0].group_id}/").json()
    assert group["occurrences"] == 4 and group["fingerprint"] == logs[0].fingerprint
    assert [log["id"] for log in group["recent_logs"]] == [log.id for log in reversed(logs)]
    bounded = client.get(f"/api/error-groups/{logs[0].group_id}/?logs=2").json()
    assert [log["id"] for log in bounded["recent_logs"]] == [logs[3].id, logs[2].id]
    assert list(errors_of(client.get(f"/api/error-groups/{logs[0].group_id}/?logs=101"))) == ["logs"]


def test_resolve_a_group_then_it_regresses(client: Client, database_url: str) -> None:
    first = client.post("/api/errors/", json=FULL).json()
    second = client.post("/api/errors/", json={**FULL, "message": "Order 99 lost"}).json()
    group_id = first["group_id"]
    resolved = client.post(f"/api/error-groups/{group_id}/resolve/")
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_at"] is not None
    for log in (first, second):
        assert client.get(f"/api/errors/{log['id']}/").json()["is_resolved"] is True
    again = client.post(f"/api/error-groups/{group_id}/resolve/")
    assert (again.status_code, again.json()) == (200, resolved.json())
    assert ids(client.get("/api/error-groups/?status=resolved")) == [group_id]

    third = client.post("/api/errors/", json={**FULL, "message": "Order 100 lost", "user_id": 8}).json()
    assert (third["group_id"], third["is_resolved"], third["resolved_at"]) == (group_id, False, None)
    group = client.get(f"/api/error-groups/{group_id}/").json()
    assert (group["status"], group["occurrences"], group["users_affected"]) == ("regressed", 3, 2)
    assert group["resolved_at"] == resolved.json()["resolved_at"]
    assert [log["id"] for log in group["recent_logs"]] == [third["id"], second["id"], first["id"]]

    reopened = client.post(f"/api/error-groups/{group_id}/unresolve/")
    assert reopened.status_code == 200
    assert (reopened.json()["status"], reopened.json()["resolved_at"]) == ("unresolved", None)
    assert client.post(f"/api/error-groups/{group_id}/unresolve/").json() == reopened.json()
    # Reopening the group leaves its logs as they are.
    assert client.get(f"/api/errors/{first['id']}/").json()["is_resolved"] is True


def test_a_user_sees_and_records_only_their_own(client: Client, settings: Settings) -> None:
    mine = client.post("/api/errors/", json=FULL).json()  # staff records it for user 7
    theirs = client.post("/api/errors/", json={**FULL, "user_id": 8}).json()
    anonymous = client.post("/api/errors/", json={**FULL, "user_id": None}).json()
    user = bearer(settings, "7")

    assert ids(client.get("/api/errors/", headers=user)) == [mine["id"]]
    assert ids(client.get("/api/errors/?user=7", headers=user)) == [mine["id"]]
    forbidden = client.get("/api/errors/?user=8", headers=user)
    assert forbidden.status_code == 403 and "staff" in forbidden.json()["detail"]
    assert client.get(f"/api/errors/{mine['id']}/", headers=user).json() == mine
    assert client.get(f"/api/errors/{theirs['id']}/", headers=user).status_code == 403
    assert client.get(f"/api/errors/{anonymous['id']}/", headers=user).status_code == 403

    own = client.post("/api/errors/", json={"level": "error", "message": "Mine"}, headers=user)
    assert (own.status_code, own.json()["user_id"]) == (201, 7)
    explicit = client.post("/api/errors/", json={"level": "error", "message": "Mine", "user_id": 7}, headers=user)
    assert (explicit.status_code, explicit.json()["user_id"]) == (201, 7)
    as_other = client.post("/api/errors/", json={"level": "error", "message": "x", "user_id": 8}, headers=user)
    assert as_other.status_code == 403 and "own error logs" in as_other.json()["detail"]

    for response in [
        client.put(f"/api/errors/{mine['id']}/", json={k: v for k, v in FULL.items()}, headers=user),
        client.patch(f"/api/errors/{mine['id']}/", json={"level": "info"}, headers=user),
        client.delete(f"/api/errors/{mine['id']}/", headers=user),
        client.post(f"/api/errors/{mine['id']}/resolve/", headers=user),
        client.post(f"/api/errors/{mine['id']}/unresolve/", headers=user),
        client.get("/api/error-groups/", headers=user),
        client.get(f"/api/error-groups/{mine['group_id']}/", headers=user),
        client.post(f"/api/error-groups/{mine['group_id']}/resolve/", headers=user),
        client.post(f"/api/error-groups/{mine['group_id']}/unresolve/", headers=user),
    ]:
        assert response.status_code == 403, (response.request.method, response.request.url, response.text)
    assert client.get(f"/api/errors/{mine['id']}/").json() == mine  # nothing changed

    # A backend's service token records for any user, but reads nobody's logs.
    service = bearer(settings, "shop-backend", service=True)
    recorded = client.post("/api/errors/", json={**FULL, "user_id": 8}, headers=service)
    assert (recorded.status_code, recorded.json()["user_id"]) == (201, 8)
    assert client.get("/api/errors/", headers=service).status_code == 403
    assert client.get("/api/errors/", headers={"Authorization": "Bearer not-a-token"}).status_code == 401


# `user` is the original product's documented name for `user_id`: served beside it (null alike), written under
# either name (never both), and held to the same permission rule.
SAME_ID = {"user": "the same field as `user_id`: send one of them"}


def log_rows(database_url: str) -> list[tuple[Any, ...]]:
    return rows(database_url, "SELECT id, user_id, level, message FROM error_logs ORDER BY id")


def test_every_log_answered_carries_user(client: Client, database_url: str) -> None:
    recorded = record(database_url, "Cart 1 empty", user_id=5)  # as the request middleware records one
    anonymous = record(database_url, "Cart 2 empty")
    created = client.post("/api/errors/", json=FULL).json()
    assert (created["user_id"], created["user"]) == (7, 7)
    assert (recorded.user_id, recorded.user, anonymous.user_id, anonymous.user) == (5, 5, None, None)
    assert client.get(f"/api/errors/{created['id']}/").json() == created
    answered = client.get(f"/api/errors/{anonymous.id}/").json()
    assert (answered["user_id"], answered["user"]) == (None, None)
    listed = client.get("/api/errors/?ordering=created_at").json()["results"]
    assert [(log["id"], log["user_id"], log["user"]) for log in listed] == [
        (recorded.id, 5, 5), (anonymous.id, None, None), (created["id"], 7, 7),
    ]  # fmt: skip
    group = client.get(f"/api/error-groups/{recorded.group_id}/").json()
    assert [(log["user_id"], log["user"]) for log in group["recent_logs"]] == [(None, None), (5, 5)]
    resolved = client.post(f"/api/errors/{created['id']}/resolve/").json()
    assert (resolved["user_id"], resolved["user"]) == (7, 7)


def test_writes_take_user_for_user_id(client: Client, database_url: str) -> None:
    without_id = {k: v for k, v in FULL.items() if k != "user_id"}
    created = client.post("/api/errors/", json={**without_id, "user": 8})
    assert created.status_code == 201, created.text
    log = created.json()
    assert (log["user_id"], log["user"]) == (8, 8)
    assert group_row(database_url, log["group_id"])[:2] == (1, 1)  # the user counts as affected
    replaced = client.put(f"/api/errors/{log['id']}/", json={**without_id, "user": 9})
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["user_id"], replaced.json()["user"]) == (9, 9)
    patched = client.patch(f"/api/errors/{log['id']}/", json={"user": None}).json()
    assert (patched["user_id"], patched["user"]) == (None, None)
    assert group_row(database_url, log["group_id"])[:2] == (1, 0)
    patched = client.patch(f"/api/errors/{log['id']}/", json={"user": 10}).json()
    assert (patched["user_id"], patched["user"]) == (10, 10)
    assert log_rows(database_url) == [(log["id"], 10, "critical", "Order 12 lost")]
    # PUT needs the user under one name or the other (null allowed).
    missing = errors_of(client.put(f"/api/errors/{log['id']}/", json=without_id))
    assert missing == {"user_id": "required field is missing"}
    assert client.put(f"/api/errors/{log['id']}/", json={**without_id, "user": None}).json()["user"] is None


def test_both_names_are_refused_and_nothing_is_written(client: Client, database_url: str) -> None:
    log = client.post("/api/errors/", json=FULL).json()
    before = log_rows(database_url)
    groups = group_row(database_url, log["group_id"])
    for user in (7, 8, None):  # refused even when both carry the same id
        both = {**FULL, "user": user, "level": "info"}
        assert errors_of(client.post("/api/errors/", json=both)) == SAME_ID
        assert errors_of(client.put(f"/api/errors/{log['id']}/", json=both)) == SAME_ID
        assert errors_of(client.patch(f"/api/errors/{log['id']}/", json={"user_id": 7, "user": user})) == SAME_ID
    assert errors_of(client.post("/api/errors/", json={**FULL, "user": 7, "colour": "red"})) == {
        **SAME_ID, "colour": "unknown field",
    }  # fmt: skip
    assert log_rows(database_url) == before
    assert group_row(database_url, log["group_id"]) == groups


def test_a_bad_user_is_named_as_sent(client: Client, database_url: str) -> None:
    without_id = {k: v for k, v in FULL.items() if k != "user_id"}
    for value in (0, "7", 2**63, 1.5):
        assert list(errors_of(client.post("/api/errors/", json={**without_id, "user": value}))) == ["user"], value
    assert log_rows(database_url) == []


def test_a_user_records_only_their_own_under_either_name(client: Client, settings: Settings, database_url: str) -> None:
    seven = bearer(settings, "7")
    body = {"level": "error", "message": "Checkout failed"}
    refused = client.post("/api/errors/", json={**body, "user": 8}, headers=seven)
    assert refused.status_code == 403 and "own error logs" in refused.json()["detail"]
    assert refused.json() == client.post("/api/errors/", json={**body, "user_id": 8}, headers=seven).json()
    assert log_rows(database_url) == []
    assert rows(database_url, "SELECT count(*)::int FROM error_groups") == [(0,)]
    both = client.post("/api/errors/", json={**body, "user": 7, "user_id": 8}, headers=seven)
    assert errors_of(both) == SAME_ID  # no way round the rule through the second name
    # Their own id, or nothing (null): recorded as theirs.
    for user in (7, None):
        own = client.post("/api/errors/", json={**body, "user": user}, headers=seven)
        assert own.status_code == 201, own.text
        assert (own.json()["user_id"], own.json()["user"]) == (7, 7)
    assert [r[1] for r in log_rows(database_url)] == [7, 7]
    # Only staff change a log, whichever name is sent.
    log_id = log_rows(database_url)[0][0]
    assert client.patch(f"/api/errors/{log_id}/", json={"user": 8}, headers=seven).status_code == 403
    # A backend's service token records for any user.
    service = bearer(settings, "shop-backend", service=True)
    recorded = client.post("/api/errors/", json={**body, "user": 8}, headers=service)
    assert (recorded.status_code, recorded.json()["user_id"]) == (201, 8)
    assert [r[1] for r in log_rows(database_url)] == [7, 7, 8]
