"""Small text helpers shared across the package: SQL literals, slugs, label ordering, URIs."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

__all__ = [
    "DIRECTION_CONTROLS",
    "inert_text",
    "is_mlflow_uri",
    "natural_key",
    "quoted_names",
    "slug",
    "sql_identifier",
    "sql_literal",
    "sql_timestamp",
]


def sql_timestamp(value: dt.datetime) -> str:
    """Render a naive datetime as a DuckDB ``TIMESTAMP`` literal.

    Examples
    --------
    >>> sql_timestamp(dt.datetime(2024, 1, 31, 12, 30))
    "TIMESTAMP '2024-01-31 12:30:00'"
    """
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def sql_literal(text: str) -> str:
    """Quote text as an SQL string literal (single quotes doubled).

    Examples
    --------
    >>> sql_literal("o'clock")
    "'o''clock'"
    """
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """Quote a column name as an SQL identifier (double quotes doubled).

    Examples
    --------
    >>> sql_identifier('a"b')
    '"a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


def quoted_names(names: list[str], limit: int) -> str:
    """List names quoted, the first ``limit`` of them (``...`` for the rest), for messages.

    Examples
    --------
    >>> quoted_names(["order", "page_view", "view"], 2)
    "'order', 'page_view', ..."
    """
    return ", ".join(repr(name) for name in names[:limit]) + (", ..." if len(names) > limit else "")


def slug(name: str) -> str:
    """Turn an event name into a snake_case identifier part (``"event"`` if nothing is left).

    Examples
    --------
    >>> slug("Add to Cart!")
    'add_to_cart'
    >>> slug("***")
    'event'
    """
    cleaned = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    return cleaned or "event"


def natural_key(label: Any) -> tuple[int, float, str]:
    """Sort key that puts integer-like labels first, in numeric order.

    Examples
    --------
    >>> sorted(["10", "b", "2", "a"], key=natural_key)
    ['2', '10', 'a', 'b']
    """
    text = str(label)
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def is_mlflow_uri(text: str) -> bool:
    """Whether ``text`` names an MLflow model (``models:/...``, ``runs:/...``, ``scheme://``).

    Examples
    --------
    >>> is_mlflow_uri("models:/segmentkit-demo@champion"), is_mlflow_uri("models/segmentkit-demo")
    (True, False)
    """
    return "://" in text or text.startswith(("models:/", "runs:/"))


#: Unicode direction controls (embeddings, overrides, isolates): in a name from the
#: log they would reorder the text around it on screen (``"\u202eevil"`` shows as
#: ``"live"``; a share after it reads backwards), so reports show them as code points.
DIRECTION_CONTROLS = {
    code: f"<U+{code:04X}>"
    for code in (0x200E, 0x200F, *range(0x202A, 0x202F), 0x061C, *range(0x2066, 0x206A))
}


def inert_text(value: Any) -> str:
    """Return ``str(value)`` with Unicode direction controls written as ``<U+XXXX>``.

    Escaping for HTML or Markdown comes after: the marker's ``<`` and ``>`` are
    escaped like any other text.

    Examples
    --------
    >>> inert_text("\u202eevil")
    '<U+202E>evil'
    """
    return str(value).translate(DIRECTION_CONTROLS)
