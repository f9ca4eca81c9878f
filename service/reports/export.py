"""A report payload as CSV: one row per figure, and one row per item of a list.

Columns: `key` (the dotted path of the figure), `index` (the position in a list, empty otherwise), `value`, then
one column per field of the list items (dotted when nested). Keys come in alphabetical order at every level:
PostgreSQL's jsonb keeps no insertion order (it sorts keys by length), so the stored order means nothing. So

    {"top": [{"n": 60, "city": "Berlin"}], "a": {"b": 1}}

becomes

    key,index,value,city,n
    a.b,,1,,
    top,0,,Berlin,60

Text cells that a spreadsheet would read as a formula (starting with `= + - @`, a tab or a carriage return) are
written with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

FIXED = ("key", "index", "value")


# A text cell starting with one of these opens as a formula in a spreadsheet (CSV injection): such cells get a
# leading apostrophe (OWASP's rule). Places and names in reports are client text; numbers are written as numbers.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):  # a list inside a list item: kept whole rather than dropped
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _leaves(value: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, item in sorted(value.items()):
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(item, Mapping):
            yield from _leaves(item, key)
        else:
            yield key, item


def rows(payload: Mapping[str, Any]) -> list[dict[str, str]]:
    """The payload flattened: a row per scalar figure, a row per list item (an empty list gives no row)."""
    result: list[dict[str, str]] = []
    for key, value in _leaves(payload):
        if not isinstance(value, list):
            result.append({"key": key, "index": "", "value": _cell(value)})
            continue
        for index, item in enumerate(value):
            row = {"key": key, "index": str(index)}
            if isinstance(item, Mapping):
                # Item fields go to their own columns; a field named like a fixed column is prefixed so it
                # cannot overwrite the key or index.
                row.update({(f"item.{f}" if f in FIXED else f): _cell(v) for f, v in _leaves(item)})
            else:
                row["value"] = _cell(item)
            result.append(row)
    return result


def to_csv(payload: Mapping[str, Any]) -> str:
    """The payload as CSV text (RFC 4180: CRLF line ends, quoted where needed)."""
    flat = rows(payload)
    columns = list(FIXED)
    for row in flat:
        for name in row:
            if name not in columns:
                columns.append(name)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()
