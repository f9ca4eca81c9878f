"""What every CRUD resource shares: list pages, ordering whitelists, filter WHERE clauses, write-body decoding.

A resource's list handler, from query parameters to the answer (the daily snapshots in service/snapshots/api.py
are a complete example)::

    ORDERING = Ordering(["date", "active_users", "id"], default="-date")
    SELECT = sql.SQL("SELECT {columns} FROM daily_analytics").format(columns=columns(DailyAnalytics))

    @get("/")
    async def list_days(
        self,
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
        date_from: Annotated[date | None, QueryParameter(description="...")] = None,
        ordering: Annotated[str | None, QueryParameter(description=ORDERING.description)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Page[DailyAnalytics]:
        where = Where()
        where.optional("date >= {}", date_from)  # skipped when the filter is absent
        order = ORDERING.parse(ordering)  # 400 naming `ordering` for a field outside the whitelist
        # A read: on a read replica when one keeps up (service/storage/replicas.py), else on the primary.
        count, rows = await resources.reads.run(
            lambda conn: fetch_page(conn, SELECT, where, order, page, page_size, DailyAnalytics)
        )
        return build_page(request, page, page_size, count, rows)

Identifiers reach SQL only from the whitelist (through `psycopg.sql.Identifier`) or from literal SQL text in the
code; every value a client sends is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Generic, LiteralString, TypeVar
from urllib.parse import parse_qsl, urlencode

import msgspec
from litestar import Request
from litestar.params import QueryParameter
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from service.core import client_json
from service.core.errors import FieldError, InvalidInput

T = TypeVar("T")
B = TypeVar("B", bound=msgspec.Struct)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_PAGE = 1_000_000  # keeps OFFSET (page x page_size) far inside bigint
BIGINT_MAX = 2**63 - 1  # the largest id (and count) a bigint column holds
FLOAT_MAX = 1.7976931348623157e308  # finite floats only: JSON has no NaN or Infinity, and 1e999 overflows to inf

PageNumber = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description="Page number, from 1")]
PageSize = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description=f"Results per page, 1 to {MAX_PAGE_SIZE}")]


class Page(msgspec.Struct, Generic[T]):
    """One page of a list: every match counted, the links to the neighbouring pages (null at the ends)."""

    count: int  # matches on all pages
    next: str | None  # path and query of the next page, filters kept
    previous: str | None
    results: list[T]


class Ordering:
    """The fields a list may be ordered by (`ordering=<field>` or `-<field>` for descending), and its default.

    The tie breaker (`id`) follows the chosen direction, so pages never overlap or skip rows of equal keys.
    """

    def __init__(self, fields: Iterable[str] | Mapping[str, str], default: str, tie_breaker: str = "id") -> None:
        # Public name -> column: a plain list means the public names are the columns.
        self.columns = dict(fields) if isinstance(fields, Mapping) else {name: name for name in fields}
        self.tie_breaker = tie_breaker
        if default.removeprefix("-") not in self.columns:
            raise ValueError(f"default ordering {default!r} is not one of {sorted(self.columns)}")
        self.default = default

    @property
    def description(self) -> str:
        """The query parameter's documentation: the whitelist and the default."""
        names = ", ".join(f"`{name}`" for name in self.columns)
        return f"One of {names}; prefix `-` for descending. Default `{self.default}`"

    def parse(self, value: str | None) -> sql.Composed:
        """The ORDER BY clause for `value` (None or empty: the default); a field outside the whitelist is a 400."""
        text = (value or "").strip() or self.default
        descending = text.startswith("-")
        name = text.removeprefix("-")
        column = self.columns.get(name)
        if column is None:
            names = ", ".join(self.columns)
            raise InvalidInput([FieldError("ordering", f"unknown field {name!r}; one of {names}, `-` for descending")])
        direction = sql.SQL(" DESC" if descending else " ASC")
        keys = [sql.Composed([sql.Identifier(column), direction])]
        if column != self.tie_breaker:
            keys.append(sql.Composed([sql.Identifier(self.tie_breaker), direction]))
        return sql.SQL("ORDER BY {}").format(sql.SQL(", ").join(keys))


class Where:
    """The conditions of a list query, ANDed; each condition's values are bound parameters.

    A condition is SQL text written in the code (a `LiteralString`, so never built from input) with one `{}`
    per value: `where.add("recorded_at >= {}", since)`, `where.add("level = ANY({})", ["error", "critical"])`.
    """

    def __init__(self) -> None:
        self.conditions: list[sql.Composable] = []
        self.params: dict[str, Any] = {}

    def add(self, condition: LiteralString, *values: Any) -> None:
        """AND `condition`, its `{}` placeholders bound to `values` in order."""
        names = [f"w{len(self.params) + i}" for i in range(len(values))]
        self.params.update(zip(names, values, strict=True))
        self.conditions.append(sql.SQL(condition).format(*(sql.Placeholder(n) for n in names)))

    def optional(self, condition: LiteralString, value: Any) -> None:
        """`add(condition, value)` when the filter was given (not None); nothing otherwise."""
        if value is not None:
            self.add(condition, value)

    def clause(self) -> sql.Composable:
        """`WHERE a AND b ...`, or nothing when there is no condition."""
        if not self.conditions:
            return sql.SQL("")
        return sql.SQL("WHERE {}").format(sql.SQL(" AND ").join(sql.SQL("({})").format(c) for c in self.conditions))


class Aliased(msgspec.Struct, kw_only=True):
    """A row answered with some fields under a second name as well: the original product's documentation names
    them differently from our columns (`new_users` for `new_registrations`, `user` for `user_id`).

    `ALIASES` maps each documented name to its column. An alias is a required field of its own (so the OpenAPI
    document says every row has it), selected as `column AS alias` (`columns`, `alias_columns`): one column, two
    names, always the same value. Write bodies accept either name, never both (`decode_body`).
    """

    ALIASES: ClassVar[Mapping[str, str]] = {}


def alias_columns(row_type: type[Aliased]) -> list[sql.Composable]:
    """`"column" AS "alias"` for each documented alias of a row Struct, to end its select list."""
    return [sql.SQL("{} AS {}").format(sql.Identifier(c), sql.Identifier(a)) for a, c in row_type.ALIASES.items()]


def columns(row_type: type[msgspec.Struct]) -> sql.Composable:
    """The select list of a row Struct: its fields as quoted identifiers, in declaration order, then its aliases
    (`Aliased`) selected from their columns."""
    if not issubclass(row_type, Aliased):
        return sql.SQL(", ").join(map(sql.Identifier, row_type.__struct_fields__))
    names = [name for name in row_type.__struct_fields__ if name not in row_type.ALIASES]
    return sql.SQL(", ").join([*map(sql.Identifier, names), *alias_columns(row_type)])


async def fetch_page(
    conn: AsyncConnection[Any],
    select: sql.Composable,
    where: Where,
    order: sql.Composable,
    page: int,
    page_size: int,
    row_type: type[T],
) -> tuple[int, list[T]]:
    """(rows matching `where` on all pages, the rows of page `page`): `select` is `SELECT ... FROM ...` without
    a WHERE; the count and the page run in the caller's transaction, so they agree."""
    count_query = sql.SQL("SELECT count(*) FROM ({select} {where}) AS matching").format(
        select=select, where=where.clause()
    )
    cur = await conn.execute(count_query, where.params)
    row = await cur.fetchone()
    assert row is not None
    count = int(row[0])
    if (page - 1) * page_size >= count:  # past the end: the count is the whole answer
        return count, []
    page_query = sql.SQL("{select} {where} {order} LIMIT %(page_limit)s OFFSET %(page_offset)s").format(
        select=select, where=where.clause(), order=order
    )
    params = {**where.params, "page_limit": page_size, "page_offset": (page - 1) * page_size}
    async with conn.cursor(row_factory=class_row(row_type)) as rows:
        await rows.execute(page_query, params)
        return count, await rows.fetchall()


def page_url(request: Request[Any, Any, Any], page: int) -> str:
    """This request's path and query with `page` set, every other parameter kept."""
    # Parsed here rather than from `query_params`, which does not keep the order the client sent.
    kept = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "page"]
    # Litestar routes on the path without its trailing slash; links keep the documented one.
    path = request.url.path.rstrip("/") + "/"
    return f"{path}?{urlencode([*kept, ('page', str(page))])}"


def build_page(request: Request[Any, Any, Any], page: int, page_size: int, count: int, results: list[T]) -> Page[T]:
    """The answer of a list: `next` while a later page has rows; `previous` from page 2 on (from past the end it
    points at the last page)."""
    last_page = max(1, -(-count // page_size))
    return Page(
        count=count,
        next=page_url(request, page + 1) if page < last_page else None,
        previous=page_url(request, min(page - 1, last_page)) if page > 1 else None,
        results=results,
    )


def decode_body(
    body: bytes, body_type: type[B], read_only: Collection[str] = (), aliases: Mapping[str, str] | None = None
) -> B:
    """A write body as `body_type` (a Struct with `forbid_unknown_fields=True`), or a 400 naming every read-only,
    unknown and missing field at once, then the first wrongly typed value.

    Used for POST and PUT bodies (fields without a default are required) and PATCH bodies (every field defaults
    to `msgspec.UNSET`, so nothing is missing and only what was sent is set). A field may be sent under its
    documented alias instead (`aliases`: alias -> field, see `Aliased`), not under both names.
    """
    aliases = aliases or {}
    sent = client_json.decode(body, dict[str, msgspec.Raw])
    errors = [
        FieldError(alias, f"the same field as `{field}`: send one of them")
        for alias, field in aliases.items()
        if alias in sent and field in sent
    ]
    used = {field: alias for alias, field in aliases.items() if alias in sent and field not in sent}
    sent = {aliases.get(name, name): raw for name, raw in sent.items()}
    info = msgspec.structs.fields(body_type)
    known = {field.encode_name for field in info}
    errors += [FieldError(used.get(name, name), "read-only field") for name in sent if name in read_only]
    errors += [FieldError(name, "unknown field") for name in sent if name not in known and name not in read_only]
    errors += [
        FieldError(f.encode_name, "required field is missing") for f in info if f.required and f.encode_name not in sent
    ]
    if errors:
        raise InvalidInput(errors)
    for name, raw in sent.items():  # the one rule for client JSON (no NUL, 64-bit integers, depth) on every field
        as_sent = used.get(name, name)
        client_json.check(client_json.decode(raw, Any, prefix=as_sent), as_sent)
    if used:  # decoded again under the fields' own names
        body = b"{" + b",".join(msgspec.json.encode(name) + b":" + bytes(raw) for name, raw in sent.items()) + b"}"
    try:
        return client_json.decode(body, body_type)
    except InvalidInput as exc:
        raise InvalidInput([_as_sent(error, used) for error in exc.errors]) from None


def _as_sent(error: FieldError, used: Mapping[str, str]) -> FieldError:
    """A field error under the name the client used for the field (its alias, when it sent that)."""
    head, dot, rest = error.field.partition(".")
    return FieldError(used[head] + dot + rest, error.message) if head in used else error


def variant(base: type[msgspec.Struct], name: str, required: Collection[str] = ()) -> type[msgspec.Struct]:
    """`base` (a write Struct whose fields are all required: a PUT body) with every field outside `required` made
    optional, `msgspec.UNSET` when not sent: a POST body (columns not sent take their database default) or, with
    nothing required, a PATCH body. Constraints (`Meta`) are kept."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (f.name, f.type) if f.name in required else (f.name, f.type | msgspec.UnsetType, msgspec.UNSET)
        for f in msgspec.structs.fields(base)
    ]
    config = base.__struct_config__
    return msgspec.defstruct(
        name, fields, kw_only=True, forbid_unknown_fields=config.forbid_unknown_fields, module=base.__module__
    )


def sent_fields(patch: msgspec.Struct) -> dict[str, Any]:
    """The fields of a PATCH Struct that were sent (not `msgspec.UNSET`), by name."""
    return {name: value for name in patch.__struct_fields__ if (value := getattr(patch, name)) is not msgspec.UNSET}


def assignments(values: Sequence[str]) -> sql.Composable:
    """`"a" = %(a)s, "b" = %(b)s` for an UPDATE's SET list (the names come from a Struct's fields, never input)."""
    return sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in values)
