"""Client JSON: the one way request bodies are decoded, and the one rule for JSON that clients put in JSON columns.

Decoding turns every way a body can be unreadable (malformed JSON, invalid UTF-8, nesting past the decoder's
stack, wrong types) into a 400 naming the problem. The rule for free-form JSON (tracking `metadata`, a metric's
`additional_data`, an error log's `extra_data`) is what every consumer of that JSON can hold: PostgreSQL's text
and jsonb hold no NUL character; msgpack (the ingest stream) and bigint hold integers of 64 bits; jsonb holds no
infinity; and nothing deeper than MAX_DEPTH levels, walked without recursion.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import msgspec

from service.core.errors import FieldError, InvalidInput, field_error

MAX_DEPTH = 32  # levels of objects and arrays inside a free-form JSON value
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

D = TypeVar("D")


def decode(body: bytes, body_type: type[D], prefix: str = "") -> D:
    """`body` as `body_type`, or InvalidInput naming the problem: the offending field (after `prefix`, e.g. `[3]`
    for a batch item) for a value of the wrong type, `prefix` or `body` when it cannot be read at all."""
    field = prefix or "body"
    try:
        return msgspec.json.decode(body, type=body_type)
    except msgspec.ValidationError as exc:
        raise InvalidInput([field_error(exc, prefix)]) from None
    except msgspec.DecodeError as exc:
        try:  # msgspec 0.23 reports invalid UTF-8 as a DecodeError (earlier ones raised UnicodeDecodeError)
            bytes(body).decode()
        except UnicodeDecodeError as bad:
            raise InvalidInput([FieldError(field, f"not valid UTF-8 (byte {bad.start})")]) from None
        raise InvalidInput([FieldError(field, f"malformed JSON: {exc}")]) from None
    except UnicodeDecodeError as exc:
        raise InvalidInput([FieldError(field, f"not valid UTF-8 (byte {exc.start})")]) from None
    except RecursionError:
        raise InvalidInput([FieldError(field, "nested too deeply")]) from None


def problem(value: Any) -> tuple[str, str] | None:
    """The first place in a decoded JSON value that breaks the rule, as (path below the value, what is wrong)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path, "must not contain NUL characters"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                return path, "integers must fit in 64 bits (-2^63 to 2^63 - 1)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "numbers must be finite"
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return path, f"nested more than {MAX_DEPTH} levels deep"
            if isinstance(item, dict):
                if any("\x00" in key for key in item):
                    return path, "keys must not contain NUL characters"
                children = [(child, f"{path}.{key}", depth + 1) for key, child in item.items()]
            else:
                children = [(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item)]
            stack.extend(reversed(children))  # popped in document order
    return None


def check(value: Any, field: str) -> None:
    """Raise InvalidInput naming the place in `value` (sent as `field`) that breaks the rule, if any."""
    if (found := problem(value)) is not None:
        path, message = found
        raise InvalidInput([FieldError((field + path).lstrip(".") or "body", message)])
