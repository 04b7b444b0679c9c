"""Load and validate event logs into a clean DuckDB table.

Any source (Parquet or CSV path or glob, pandas DataFrame, DuckDB relation) is
mapped onto the contract's columns, typed, checked and cleaned once; the result
is an :class:`EventLog` that the feature builder reads. Every row removed is
counted in a :class:`DataQualityReport`, which holds aggregates only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fnmatch
import functools
import glob
import gzip
import itertools
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from segmentkit.config import (
    UNIX_TIME_UNITS,
    ColumnMap,
    check_csv_header,
    check_revenue_events,
    check_timestamp_format,
)
from segmentkit.errors import (
    ConfigError,
    DataValidationError,
    InsufficientDataError,
    SegmentkitWarning,
)
from segmentkit.parallel import thread_map, usable_cores
from segmentkit.text import quoted_names, slug, sql_identifier, sql_literal, sql_timestamp

__all__ = [
    "DataQualityReport",
    "EventLog",
    "EventSource",
    "check_log_reaches_as_of",
    "check_output_path",
    "check_output_target",
    "connect",
    "default_as_of",
    "load_events",
    "to_timestamp",
    "write_table",
]

EventSource = str | Path | pd.DataFrame | duckdb.DuckDBPyRelation
_SAMPLE_ROWS = 5
#: Largest absolute revenue accepted (exclusive): features sum revenue as DECIMAL(18, 6).
MAX_REVENUE = 1e12
_table_ids = itertools.count()
#: Slices of the buckets filled one after another by the duplicate search (bounds its scratch).
_SLICES = 8
#: Share of an event's rows with an amount whose user and amount recur on another event
#: above which the revenue column reads as a price on every event (see
#: :func:`check_revenue_by_event`).
RECURRING_AMOUNT_SHARE = 0.5
#: Above this many repeated row hashes, a Parquet log with duplicates is copied into
#: memory once rather than filtered against its repeated hashes at every read.
MAX_REPEATS_IN_VIEW = 100_000


@dataclass(frozen=True)
class DataQualityReport:
    """What validation found and removed; aggregates only, safe to log.

    Attributes
    ----------
    rows_read : int
        Rows in the source.
    null_user_id, null_timestamp : int
        Rows dropped for a missing user id or timestamp.
    duplicate_rows : int
        Exact duplicate rows dropped (one copy kept); 0 when not checked.
    at_or_after_as_of : int
        Rows at or after ``as_of``, excluded from the clean log.
    negative_revenue_rows : int
        Refund rows (kept; they lower revenue).
    rows_clean, users : int
        Rows and distinct users left.
    first_event, last_event : str or None
        ISO timestamps (UTC) of the first and last clean events.
    null_event : int
        Rows dropped for a missing event name (0 for a transaction table).
    stray_timestamp : int
        Rows dropped as strays: dated a year or more without any event away from the
        rest of the log, and too few to be part of it (see :func:`find_stray_rows`).
    duplicates_checked : bool
        Whether exact duplicates were looked for (``load_events(check_duplicates=...)``).
    """

    rows_read: int
    null_user_id: int
    null_timestamp: int
    duplicate_rows: int
    at_or_after_as_of: int
    negative_revenue_rows: int
    rows_clean: int
    users: int
    first_event: str | None
    last_event: str | None
    null_event: int = 0
    duplicates_checked: bool = True
    stray_timestamp: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a plain dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EventLog:
    """A validated event log held in DuckDB.

    Attributes
    ----------
    con : duckdb.DuckDBPyConnection
        Connection owning the clean table.
    table : str
        Name of the clean table, columns ``user_id, timestamp, event, revenue, session_id``
        (``revenue`` and ``session_id`` may be all null when the log lacks them).
    report : DataQualityReport
        See :attr:`report`.
    has_revenue, has_session_id : bool
        Whether the source had these optional columns.
    as_of : datetime.datetime or None
        Cut-off applied while loading (events at or after it were excluded).
    columns : ColumnMap
        The mapping the log was read with.
    source_columns : tuple of str
        Column names of the source, in order.
    event_names : tuple of str or None
        Every event name of the clean log, sorted (``None`` when not known).
    users_counted : bool
        Whether ``report.users`` was counted while loading; when not, :attr:`report`
        counts the users on first use, unless a feature table covering every clean
        event (:func:`~segmentkit.features.build_features` at or after the last one)
        has counted them already.
    order_times_unique : bool or None
        True when no two clean rows with revenue > 0 share a user and a timestamp (no
        order has several lines), so that counting such rows counts orders; ``None``
        when not checked (the duplicate check finds it for a few percent more CPU).
    """

    con: duckdb.DuckDBPyConnection
    table: str
    _report: DataQualityReport
    has_revenue: bool
    has_session_id: bool
    as_of: dt.datetime | None
    columns: ColumnMap = dataclasses.field(default_factory=ColumnMap)
    source_columns: tuple[str, ...] = ()
    event_names: tuple[str, ...] | None = None
    users_counted: bool = True
    order_times_unique: bool | None = None
    # The report once its users are known (filled at most once; not part of equality).
    _known: dict[str, DataQualityReport] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def report(self) -> DataQualityReport:
        """What validation found and removed (:class:`DataQualityReport`).

        The number of distinct users is the one costly count of validation (a hash of
        every user id, about a bare ``GROUP BY user_id`` count), and the feature query
        groups by user anyway: a log loaded with ``min_users <= 1`` leaves it to the
        first feature table that covers every clean event, and counts it here only
        when asked before.
        """
        if self.users_counted:
            return self._report
        if "report" not in self._known:
            (users,) = self.con.execute(
                f"SELECT count(DISTINCT user_id) FROM {self.table}"
            ).fetchall()[0]
            self.note_users(int(users))
        return self._known["report"]

    @property
    def first_event(self) -> str | None:
        """ISO timestamp of the first clean event (``report.first_event``, without counting)."""
        return self._report.first_event

    @property
    def last_event(self) -> str | None:
        """ISO timestamp of the last clean event (``report.last_event``, without counting)."""
        return self._report.last_event

    def note_users(self, users: int) -> None:
        """Record the number of distinct users of the clean log, counted by a caller.

        Only a count over every clean event is valid here (e.g. the rows of a feature
        table as of a time after the last event); a log that counted its users while
        loading keeps its own count.
        """
        if not self.users_counted and "report" not in self._known:
            self._known["report"] = dataclasses.replace(self._report, users=int(users))

    def relation(self) -> duckdb.DuckDBPyRelation:
        """Return the clean events as a DuckDB relation."""
        return self.con.table(self.table)

    def to_pandas(self) -> pd.DataFrame:
        """Return the clean events as a DataFrame (small logs only)."""
        return self.con.execute(
            f"SELECT * FROM {self.table} ORDER BY user_id, timestamp, event"
        ).df()


def connect(
    threads: int | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB connection set up for segmentkit (UTC session time zone).

    Naive timestamps and time zone strings are then read as UTC whatever the
    machine's local time zone is.
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # Inside Jupyter without ipywidgets DuckDB keeps the bar off and refuses the setting.
    with contextlib.suppress(duckdb.InvalidInputException):
        con.execute("SET enable_progress_bar = false")
    # Row order of the clean table is irrelevant (every query aggregates or sorts);
    # dropping the guarantee lets DuckDB stream with less memory.
    con.execute("SET preserve_insertion_order = false")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit is not None:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


#: Microseconds in a day (timestamps are compared as integer microseconds since 1970).
MICROS_PER_DAY = 86_400_000_000


def epoch_us(value: dt.datetime) -> int:
    """Microseconds from 1970-01-01 to a naive UTC datetime, exactly.

    Examples
    --------
    >>> epoch_us(dt.datetime(1970, 1, 2, 0, 0, 0, 5))
    86400000005
    """
    delta = value - dt.datetime(1970, 1, 1)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_timestamp(value: dt.date | dt.datetime | str | pd.Timestamp) -> dt.datetime:
    """Convert a date-like value to a naive UTC datetime.

    Strings must be ISO 8601 dates or datetimes (``2024-03-01``, ``2024-03-01T12:00``,
    ``2024-03-01T12:00+02:00``): ``01-11-2024`` could mean January or November, so it
    is refused rather than guessed.

    Examples
    --------
    >>> to_timestamp("2024-03-01")
    datetime.datetime(2024, 3, 1, 0, 0)
    >>> to_timestamp("2024-03-01T12:30+02:00")
    datetime.datetime(2024, 3, 1, 10, 30)
    """
    expected = (
        f"as_of: expected an ISO 8601 date or datetime "
        f"(YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]), got {value!r}"
    )
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise DataValidationError(expected) from None
    if isinstance(value, int | float | np.number):
        # pandas reads a number as nanoseconds since 1970 (20250101 is 1970-01-01 00:00:00.02).
        raise DataValidationError(
            f"{expected} (a number is no date: epoch seconds, milliseconds or YYYYMMDD?)"
        )
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataValidationError(expected) from None
    if stamp is pd.NaT:
        raise DataValidationError(expected)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def _register_source(
    con: duckdb.DuckDBPyConnection, source: EventSource, columns: ColumnMap
) -> str:
    """Make ``source`` queryable in ``con`` and return a SQL expression that reads it.

    CSV files are read by :func:`csv_source`, with ``columns``' header names and user
    id column; other sources name and type their own columns.
    """
    name = f"_sk_raw_{next(_table_ids)}"
    if isinstance(source, pd.DataFrame):
        con.register(name, source)
        return name
    if isinstance(source, duckdb.DuckDBPyRelation):
        # A relation belongs to its own connection: bring its rows into ours once
        # (validation scans the source more than once).
        con.register(name, source.to_arrow_table())
        return name
    if isinstance(source, str | Path):
        kind, paths = event_files(str(source))
        if kind == "parquet":
            parquet = nested_as_dotted(con, f"read_parquet({_sql_list(paths)})")
            return object_keys_sql(con, parquet, columns)
        if kind == "json":
            return json_source(con, paths, columns)
        if columns.csv_header is not None and aligned_names(con, paths[0], columns) is None:
            check_headerless_csv(con, paths[0], columns.csv_header, columns.csv_encoding)
        return object_keys_sql(con, csv_source(con, paths, columns), columns)
    raise DataValidationError(
        "events: expected a Parquet/CSV path or glob, a pandas DataFrame or a DuckDB relation, "
        f"got {type(source).__name__}"
    )


#: File names read as each kind of event file (DuckDB and Spark read gzip by its suffix).
#: Tab-separated, ``.txt`` and ``.dat`` exports (YooChoose's ``yoochoose-clicks.dat``)
#: are CSV whose delimiter the reader detects.
_FILE_KINDS = {
    f"{stem}{gzip}": kind
    for stem, kind in (
        (".parquet", "parquet"),
        (".csv", "csv"),
        (".tsv", "csv"),
        (".txt", "csv"),
        (".dat", "csv"),
        (".jsonl", "json"),
        (".ndjson", "json"),
        (".json", "json"),
    )
    for gzip in (("",) if kind == "parquet" else ("", ".gz"))
}

#: The names of the files each kind reads, for messages.
FILE_NAMES = (
    "Parquet (.parquet), CSV (.csv, .tsv, .txt, .dat) or JSON lines (.jsonl, .ndjson, .json) "
    "files, the text ones optionally gzipped (.gz)"
)


def file_kind(path: str) -> str | None:
    """Return ``"parquet"``, ``"csv"`` or ``"json"`` for an event file's name, else None.

    Examples
    --------
    >>> [file_kind(name) for name in ("a.parquet", "b.TSV", "c.jsonl.gz", "d.xlsx")]
    ['parquet', 'csv', 'json', None]
    """
    name = Path(path).name.lower()
    return next((kind for end, kind in _FILE_KINDS.items() if name.endswith(end)), None)


_KIND_NAMES = {"csv": "CSV", "json": "JSON", "parquet": "Parquet"}

#: What to do with files that public logs and exports come as, but that are not read.
_OTHER_FILES = {
    ".xlsx": "an Excel workbook (UCI's 'Online Retail.xlsx') is not read: save its sheet as "
    "CSV UTF-8, or pass pandas.read_excel(path) as a DataFrame",
    ".xls": "an Excel workbook is not read: save its sheet as CSV UTF-8, or pass "
    "pandas.read_excel(path) as a DataFrame",
    ".zip": "an archive is not read: unzip it and give the files (or their directory)",
}


def _files_in(directory: Path) -> list[str]:
    """Event files anywhere below ``directory``, as Spark and Hive lay out a table.

    Names starting with ``_`` or ``.`` at any depth are skipped, as Spark skips them
    (``_SUCCESS``, ``_temporary/`` of an unfinished job, ``.crc`` checksums); the
    partition directories (``date=2024-01-01/``) are read, their values as columns.
    """
    return sorted(
        str(path)
        for path in directory.rglob("*")
        if path.is_file()
        and file_kind(str(path)) is not None
        and not any(part[:1] in "_." for part in path.relative_to(directory).parts)
    )


def event_files(text: str) -> tuple[str, list[str]]:
    """Resolve a local path, glob or directory of event files into their kind and files.

    Shared by every engine. A directory stands for its Parquet or CSV files at any depth
    (see :func:`_files_in`); ``.csv.gz`` files are CSV.

    Raises
    ------
    DataValidationError
        Nothing matches, a file is missing or empty, a name is of no kind read
        (:data:`FILE_NAMES`), or kinds are mixed.
    """
    files: list[str] = []
    for path in _paths_of(text):
        if Path(path).is_dir():
            found = _files_in(Path(path))
            if not found:
                raise DataValidationError(
                    f"events directory {path} holds no event file; expected {FILE_NAMES}"
                )
            files += found
            continue
        if not Path(path).is_file():
            raise DataValidationError(f"events file not found: {path}")
        files.append(path)
    if not files:
        raise DataValidationError(f"no file matches the events pattern {text!r}")
    for path in files:
        if Path(path).stat().st_size == 0:
            raise DataValidationError(f"events file {path} is empty (0 bytes)")
    kinds = {file_kind(path) for path in files}
    if None in kinds:
        odd = sorted({Path(p).suffix.lower() or Path(p).name for p in files if not file_kind(p)})
        raise DataValidationError(
            f"events {text!r}: expected {FILE_NAMES}, got {odd}"
            + "".join(f"; {_OTHER_FILES[end]}" for end in odd if end in _OTHER_FILES)
        )
    if len(kinds) > 1:
        mixed = " and ".join(_KIND_NAMES[kind] for kind in sorted(kinds))
        raise DataValidationError(
            f"events {text!r}: {mixed} files mixed; name one kind, e.g. "
            f"'{Path(text) / '**' / '*.parquet'}'"
        )
    return kinds.pop(), files


def csv_source_sql(paths: Sequence[str], columns: ColumnMap, text_column: str | None = None) -> str:
    """Return the SQL reading CSV files as DuckDB's sniffer types them.

    With ``columns.csv_header`` the files have no header row and these are their
    columns, in the same order in every file; ``columns.csv_encoding`` is their text
    encoding. ``text_column`` is read as text, whatever it looks like.
    """
    options = f", types = {{{sql_literal(text_column)}: 'VARCHAR'}}" if text_column else ""
    if columns.csv_encoding is not None:
        options += f", encoding = {sql_literal(columns.csv_encoding)}"
    if columns.csv_header is None:
        return f"read_csv({_sql_list(paths)}, header = true, union_by_name = true{options})"
    names = _sql_list(columns.csv_header)
    return f"read_csv({_sql_list(paths)}, header = false, names = {names}{options})"


def csv_source(con: duckdb.DuckDBPyConnection, paths: Sequence[str], columns: ColumnMap) -> str:
    """Return the SQL reading CSV files as every engine types them.

    As DuckDB's sniffer types them, but for a user id column it reads as decimals of
    which some have a fraction: those are text that looks like a number (GA4's
    ``user_pseudo_id`` ``1026454.4271112065``), read as text, exactly (as doubles,
    ids 17 digits long would lose their last digits and merge users). Ids that are
    all whole (UCI's ``12346.0``) stay numbers, read as integers.
    """
    names = aligned_names(con, paths[0], columns)
    if names is not None:
        return aligned_source(con, paths, names, columns)
    sql = csv_source_sql(paths, columns)
    try:
        types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()}
    except duckdb.Error:
        return sql  # refused with the reader's own message where the log is read
    if not _float_ids(str(types.get(columns.user_id, ""))):
        return sql
    user = f"CAST({sql_identifier(columns.user_id)} AS DOUBLE)"
    (fractions,) = con.execute(
        f"SELECT count(*) FILTER (WHERE isfinite({user}) AND {user} <> trunc({user})) FROM {sql}"
    ).fetchone()
    return csv_source_sql(paths, columns, columns.user_id) if fractions else sql


def json_source_sql(paths: Sequence[str], types: Mapping[str, str] | None = None) -> str:
    """Return the SQL reading JSON files as DuckDB types them, nested objects as structs.

    One JSON object per line (JSON lines), or one array of objects per file. Without
    ``types`` (column name to DuckDB type), every record is read to type the columns
    (``sample_size = -1``, in every file): a key that first occurs late (a revenue
    property only purchases carry, in the 40th hourly file of an export) is then a
    column, not dropped; every object is a struct, never a map. That pass runs
    whenever the SQL is planned, so the SQL that validation scans again and again is
    given the types it found.
    """
    # Objects are always structs, as Spark reads them: DuckDB would type as a MAP an
    # object whose keys are few in its records (Segment's properties.revenue, on
    # purchases only) or many, and its keys would be no columns.
    options = (
        "sample_size = -1, maximum_sample_files = -1, field_appearance_threshold = 0, "
        "map_inference_threshold = -1"
    )
    if types is not None:
        listed = ", ".join(
            f"{sql_literal(name)}: {sql_literal(kind)}" for name, kind in types.items()
        )
        options = f"columns = {{{listed}}}"
    return f"read_json({_sql_list(paths)}, format = 'auto', records = true, {options})"


def flat_fields(name: str, children: Callable[[Any], Any], kind: Any) -> list[tuple[str, ...]]:
    """Return the path of every leaf of a column, nested objects flattened (shared by engines).

    ``children(kind)`` gives the ``(name, kind)`` fields of a nested object's type,
    or None for any other type; lists and leaves are kept whole. A log exported as
    JSON (Mixpanel's ``properties.distinct_id``, Segment's ``properties.revenue``)
    then maps its nested keys by their dotted path, e.g. ``user_id: properties.distinct_id``.

    Examples
    --------
    >>> spec = {"a": 1, "b": {"c": 2, "d": {"e": 3}}}
    >>> fields = lambda kind: list(kind.items()) if isinstance(kind, dict) else None
    >>> flat_fields("p", fields, spec)
    [('p', 'a'), ('p', 'b', 'c'), ('p', 'b', 'd', 'e')]
    """
    inner = children(kind)
    if not inner:
        return [(name,)]
    return [(name, *path) for field, sub in inner for path in flat_fields(field, children, sub)]


def _duckdb_fields(kind: duckdb.typing.DuckDBPyType) -> list[tuple[str, Any]] | None:
    return list(kind.children) if kind.id == "struct" else None


def json_source(
    con: duckdb.DuckDBPyConnection, paths: Sequence[str], columns: ColumnMap | None = None
) -> str:
    """Return the SQL reading JSON files with nested objects as dotted columns.

    A key ``time`` inside ``properties`` is the column ``properties.time``; the
    columns of flat records are read as they are (:func:`json_source_sql`).

    Raises
    ------
    DataValidationError
        The files hold one object whose key lists the records (``{"events": [...]}``),
        not the records: ``columns``' user id is then none of the columns.
    """
    named = _column_types(con, json_source_sql(paths))
    if named is None:
        return json_source_sql(paths)  # refused with the reader's own message when read
    raw = json_source_sql(paths, {name: str(kind) for name, kind in named.items()})
    fields = _leaf_paths(named)
    lists = [name for name, kind in named.items() if _records_list(kind)]
    user = (columns or ColumnMap()).user_id
    if lists and user not in {".".join(path) for path in fields}:
        raise DataValidationError(
            f"events: {paths[0]} holds objects whose {lists[0]!r} lists records, and no column "
            f"{user!r} (columns present: {['.'.join(path) for path in fields]}): an export "
            "wrapping its events in one object? Give one event per line, e.g. "
            f"jq -c '.{lists[0]}[]' {Path(paths[0]).name} > events.jsonl"
        )
    return _dotted_sql(raw, fields)


def nested_as_dotted(con: duckdb.DuckDBPyConnection, raw: str) -> str:
    """Return the SQL reading ``raw`` (a Parquet read) with nested structs as dotted columns.

    As JSON objects are read (:func:`json_source`): a BigQuery export's ``ecommerce``
    struct gives ``ecommerce.purchase_revenue``. Flat files are read as they are.
    """
    named = _column_types(con, raw)
    if named is None:
        return raw  # refused with the reader's own message where the log is read
    return _dotted_sql(raw, _leaf_paths(named))


def _column_types(
    con: duckdb.DuckDBPyConnection, sql: str
) -> dict[str, duckdb.typing.DuckDBPyType] | None:
    """Return the columns ``sql`` reads and their types, or None where DuckDB cannot plan it."""
    try:
        relation = con.sql(f"SELECT * FROM {sql}")
    except duckdb.Error:
        return None
    return dict(zip(relation.columns, relation.types, strict=True))


def _leaf_paths(named: Mapping[str, duckdb.typing.DuckDBPyType]) -> list[tuple[str, ...]]:
    return [
        path for name, kind in named.items() for path in flat_fields(name, _duckdb_fields, kind)
    ]


def object_keys(
    columns: ColumnMap, kinds: Mapping[str, str | None]
) -> list[tuple[str, str, str, str]]:
    """Return ``(name, column, key, kind)`` for every mapped name that is a key of an object.

    ``kinds`` tells, for each column of the log, whether it holds objects whose keys
    name no columns: ``"map"`` (a table Spark wrote keeps its ``properties`` as a
    map) or ``"json"`` (text holding JSON objects, as PostHog's and Amplitude's CSV
    exports give ``properties``), else None. A role mapped to ``properties.revenue``
    then reads that key of ``properties``. Shared by every engine.

    Examples
    --------
    >>> object_keys(ColumnMap(revenue="properties.revenue"), {"user_id": None, "properties": "map"})
    [('properties.revenue', 'properties', 'revenue', 'map')]
    """
    found = []
    for name in mapped_names(columns):
        if name in kinds or "." not in name:
            continue
        column, key = name.rsplit(".", 1)
        if kinds.get(column) and not re.search("['\"\\\\]", key):
            found.append((name, column, key, kinds[column]))
    return found


def mapped_names(columns: ColumnMap) -> list[str]:
    """Return the column names ``columns`` maps the contract's roles to, once each."""
    roles = ("user_id", "timestamp", "event", "revenue", "session_id", "quantity")
    names = (getattr(columns, role) for role in roles)
    return [name for name in dict.fromkeys(names) if name is not None]


def text_candidates(columns: ColumnMap, text_columns: Iterable[str]) -> list[str]:
    """Return the text columns a mapped dotted name could be a JSON key of."""
    texts = {name: "json" for name in text_columns}
    return sorted({column for _, column, _, _ in object_keys(columns, texts)})


def holds_json_objects(values: Iterable[Any]) -> bool:
    """Whether any of a text column's first values is a JSON object (shared by every engine).

    Examples
    --------
    >>> holds_json_objects(["", '{"revenue": 12.5}']), holds_json_objects(["a.b", "[1]"])
    (True, False)
    """
    for value in values:
        text = str(value).strip() if value is not None else ""
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                if isinstance(json.loads(text), dict):
                    return True
    return False


#: How many values of a text column tell whether it holds JSON objects.
JSON_SAMPLE = 1000


def object_keys_sql(con: duckdb.DuckDBPyConnection, sql: str, columns: ColumnMap) -> str:
    """Return the SQL reading ``sql`` with the object keys ``columns`` names as columns.

    See :func:`object_keys`; a text column counts as JSON when one of its first
    non-null values is a JSON object (:func:`holds_json_objects`).
    """
    if not any("." in name for name in mapped_names(columns)):
        return sql  # no mapped name has a dot: nothing to look for
    named = _column_types(con, sql)
    if named is None:
        return sql  # refused with the reader's own message where the log is read
    kinds: dict[str, str | None] = {
        name: "map" if kind.id == "map" else None for name, kind in named.items()
    }
    for column in text_candidates(columns, [n for n, k in named.items() if k.id == "varchar"]):
        quoted = sql_identifier(column)
        values = con.execute(
            f"SELECT {quoted} FROM {sql} WHERE {quoted} IS NOT NULL LIMIT {JSON_SAMPLE}"
        ).fetchall()
        kinds[column] = "json" if holds_json_objects(value for (value,) in values) else None
    keys = object_keys(columns, kinds)
    if not keys:
        return sql
    extracted = ", ".join(f"{_key_sql(*key[1:])} AS {sql_identifier(key[0])}" for key in keys)
    return f"(SELECT *, {extracted} FROM {sql})"


def _key_sql(column: str, key: str, kind: str) -> str:
    quoted = sql_identifier(column)
    if kind == "map":
        return f"map_extract_value({quoted}, {sql_literal(key)})"
    # Text that is no JSON reads as null, as Spark's get_json_object gives it.
    path = sql_literal(f'$."{key}"')
    return f"CASE WHEN json_valid({quoted}) THEN json_extract_string({quoted}, {path}) END"


def _dotted_sql(raw: str, fields: Sequence[tuple[str, ...]]) -> str:
    if all(len(path) == 1 for path in fields):
        return raw
    select = ", ".join(
        f"{_struct_path(path)} AS {sql_identifier('.'.join(path))}" for path in fields
    )
    return f"(SELECT {select} FROM {raw})"


def _records_list(kind: duckdb.typing.DuckDBPyType) -> bool:
    """Whether a column's type is a list of objects (records)."""
    return kind.id == "list" and kind.child.id == "struct"


def _struct_path(path: tuple[str, ...]) -> str:
    expr = sql_identifier(path[0])
    for field in path[1:]:
        expr = f"struct_extract({expr}, {sql_literal(field)})"
    return expr


#: How many first lines tell a file of columns aligned by spaces (CDNOW_master.txt).
_ALIGNED_SAMPLE = 100


def raw_lines_sql(paths: Sequence[str], encoding: str | None = None) -> str:
    """Return the SQL reading text files as lines, one VARCHAR column ``line``, untouched."""
    encoded = f", encoding = {sql_literal(encoding)}" if encoding else ""
    return (
        f"read_csv({_sql_list(paths)}, header = false, columns = {{'line': 'VARCHAR'}}, "
        f"delim = chr(31), quote = '', escape = '', auto_detect = false, strict_mode = false"
        f"{encoded})"
    )


def split_fields(line: str) -> list[str]:
    """Split a line of columns aligned by spaces into its fields (shared by every engine).

    Examples
    --------
    >>> split_fields(" 00001 19970101  1   11.77")
    ['00001', '19970101', '1', '11.77']
    """
    return line.split()


def aligned_names(
    con: duckdb.DuckDBPyConnection, path: str, columns: ColumnMap
) -> list[str] | None:
    """Return the column names of a file of columns aligned by spaces, else None.

    Such files (CDNOW's ``CDNOW_master.txt``: `` 00001 19970101  1   11.77``) have no
    delimiter a CSV reader finds: it reads each line as one column, or fails. A file is
    read so when DuckDB's sniffer finds one column (or none), and its first line and
    all but one in ten (or one) of its first lines split on runs of spaces or tabs
    into the same number (two or more) of fields. The names are
    ``columns.csv_header`` (checked against the first line as for CSV files), else the
    first line's fields.

    Raises
    ------
    DataValidationError
        ``csv_header`` does not describe the file's first line.
    """
    encoded = f", encoding = {sql_literal(columns.csv_encoding)}" if columns.csv_encoding else ""
    try:
        sniffed = con.execute(f"SELECT Columns FROM sniff_csv(?{encoded})", [path]).fetchone()[0]
    except duckdb.Error:  # no delimiter splits the first lines alike: maybe runs of spaces
        sniffed = [None]
    if len(sniffed) != 1:
        return None
    try:
        rows = con.execute(
            f"SELECT line FROM {raw_lines_sql([path], columns.csv_encoding)} "
            f"LIMIT {_ALIGNED_SAMPLE}"
        ).fetchall()
    except duckdb.Error:
        return None  # the CSV reader refuses it with its own message
    lines = [split_fields(line) for (line,) in rows if line and line.strip()]
    widths = [len(fields) for fields in lines]
    # Most lines alike (a stray line is refused by name when the file is read).
    strays = len(widths) - widths.count(widths[0]) if widths else 0
    if not lines or widths[0] < 2 or strays > max(1, len(widths) // 10):
        return None
    first = lines[0]
    if columns.csv_header is None:
        return first
    check_first_line(path, first, columns.csv_header)
    return list(columns.csv_header)


def aligned_source(
    con: duckdb.DuckDBPyConnection, paths: Sequence[str], names: Sequence[str], columns: ColumnMap
) -> str:
    """Return the SQL reading files of columns aligned by spaces, every field as text.

    Without ``csv_header``, the lines that name the columns (each file's first) are
    skipped; blank lines are skipped. The fields are text, as Spark reads
    them (numbers are read as numbers where the log is validated).

    Raises
    ------
    DataValidationError
        A line has another number of fields than the names.
    """
    lines = raw_lines_sql(paths, columns.csv_encoding)
    stripped = "regexp_replace(line, '^\\s+|\\s+$', '', 'g')"
    # Partition directories (day=2024-01-01/) give their columns beside the line.
    split = (
        f"(SELECT *, string_split_regex({stripped}, '\\s+') AS f FROM {lines} "
        f"WHERE {stripped} <> '')"
    )
    if columns.csv_header is None:  # the lines that name the columns (each file's first)
        split = f"(SELECT * FROM {split} WHERE f <> {_sql_list(names)})"
    # The least bad line in text order: the example every engine gives.
    (bad, example) = con.execute(
        f"SELECT count(*), min(array_to_string(f, ' ')) FROM {split} WHERE len(f) <> {len(names)}"
    ).fetchone()
    if bad:
        raise aligned_width_error(paths, names, bad, example)
    fields = ", ".join(f"f[{i}] AS {sql_identifier(name)}" for i, name in enumerate(names, 1))
    return f"(SELECT {fields}, * EXCLUDE (line, f) FROM {split})"


def aligned_width_error(
    paths: Sequence[str], names: Sequence[str], bad: int, example: str
) -> DataValidationError:
    """Return the error for lines of an aligned file that have another number of fields.

    Shared by every engine; ``example`` is the least such line in text order.
    """
    shown = paths[0] if len(paths) == 1 else list(paths)
    return DataValidationError(
        f"events: {bad:,} line(s) of {shown} (columns aligned by spaces) have another number "
        f"of fields than the {len(names)} names {list(names)}, e.g. {example!r}: a value "
        "holding a space?"
    )


def check_headerless_csv(
    con: duckdb.DuckDBPyConnection,
    path: str,
    csv_header: Sequence[str],
    encoding: str | None = None,
) -> None:
    """Refuse ``data.columns.csv_header`` for a CSV file it does not describe.

    Read from the file's first line: its number of fields must be the number of names
    (DuckDB would name the rest ``column5``..., or fail on fewer), and a first line
    that spells the names themselves is a header row, which would be read as data.

    Raises
    ------
    DataValidationError
        Naming the file, the counts or the header line.
    """
    encoded = f", encoding = {sql_literal(encoding)}" if encoding else ""
    first = (
        f"SELECT * FROM read_csv({sql_literal(path)}, header = false, all_varchar = true, "
        f"hive_partitioning = false{encoded}) LIMIT 1"
    )
    try:
        rows = con.execute(first).fetchall()
    except duckdb.Error as exc:
        raise unreadable(exc) from None
    check_first_line(path, [value or "" for value in rows[0]] if rows else [], csv_header)


def check_first_line(path: str, line: Sequence[str], csv_header: Sequence[str]) -> None:
    """Refuse ``csv_header`` for a file whose first line has other fields or spells them."""
    line = list(line)
    if len(line) != len(csv_header):
        raise DataValidationError(
            f"data.columns.csv_header names {len(csv_header)} column(s) {list(csv_header)}, but "
            f"the first line of {path} has {len(line)} field(s): {line}; expected one name per "
            "field, in order"
        )
    if [value.strip().casefold() for value in line] == [n.strip().casefold() for n in csv_header]:
        raise DataValidationError(
            f"data.columns.csv_header is set, but the first line of {path} is a header row "
            f"({line}) that would be read as data; set csv_header to null to read the names "
            "from the file"
        )


def _sql_list(texts: Sequence[str]) -> str:
    """Quote texts as an SQL list of string literals."""
    return "[" + ", ".join(sql_literal(text) for text in texts) + "]"


def _paths_of(text: str) -> list[str]:
    """Return the files a path or glob names (a path names itself, existing or not)."""
    return sorted(glob.glob(text)) if glob.has_magic(text) else [text]


def _check_columns_named_once(
    con: duckdb.DuckDBPyConnection, source: EventSource, columns: ColumnMap, present: Sequence[str]
) -> None:
    """Refuse a log that names a contract column twice: which copy counts would be arbitrary.

    DuckDB reads a repeated name as ``name``, ``name_1``...: only then are the file's
    own names read (the header of a CSV, the schema of a Parquet file).
    """
    mapped = [getattr(columns, role) for role in ("user_id", "timestamp", "event", "revenue")]
    mapped = [name for name in [*mapped, columns.session_id, columns.quantity] if name is not None]
    if isinstance(source, pd.DataFrame):
        names = [str(name) for name in source.columns]
    elif (
        isinstance(source, str | Path)
        and columns.csv_header is None  # else the names given, checked distinct, are read
        and any(f"{name}_1" in present for name in mapped)
    ):
        kind, files = event_files(str(source))  # a directory, or .csv.gz, as read
        quoted = sql_literal(files[0])
        if kind == "csv":
            header = f"SELECT * FROM read_csv({quoted}, header = false, all_varchar = true)"
            names = list(con.execute(header).fetchmany(1)[0])
        elif kind == "json":  # a key given twice in one object: its last value counts
            return
        else:
            # The first row of a Parquet schema is its root, not a column.
            schema = con.execute(f"SELECT name FROM parquet_schema({quoted})").fetchall()
            names = [row[0] for row in schema[1:]]
    else:
        return
    twice = [name for name in mapped if names.count(name) > 1]
    if twice:
        raise DataValidationError(
            f"column(s) {twice} appear more than once in the events; expected each column once "
            f"(columns present: {names})"
        )


def unmapped_columns(names: Sequence[str], columns: ColumnMap) -> list[str]:
    """Return the source's columns outside the contract, which tell duplicates apart.

    An exact duplicate is equal in every column of the source: two lines of one order
    (same user, time and amount, other products) are two rows. A pandas index saved
    with the frame (``__index_level_0__``) is not the log's data. With a ``quantity``
    column the clean revenue is a product (price times quantity), and with
    ``revenue_events`` it is kept on some events only, so the revenue column itself is
    compared: 0 units at two prices, or two views at two prices, are two rows.

    Examples
    --------
    >>> unmapped_columns(["user_id", "timestamp", "sku", "__index_level_0__"], ColumnMap())
    ['sku']
    """
    mapped = {columns.user_id, columns.timestamp, columns.event, columns.session_id}
    if columns.quantity is None and columns.revenue_events is None:
        mapped.add(columns.revenue)
    return [
        name
        for name in names
        if name not in mapped and not re.fullmatch(r"__index_level_\d+__", name)
    ]


# Epoch numbers at or beyond this many microseconds (about year 5138) are refused as
# unparseable, not read: DuckDB's timestamps end near year 294,000 and fail past it.
_MAX_EPOCH_US = 10**17


def timestamp_sql(column: str, type_name: str, timestamp_format: str | None = None) -> str:
    """Return the SQL reading the timestamp column as a UTC TIMESTAMP (NULL where it fails).

    ``timestamp_format`` (see :class:`~segmentkit.config.ColumnMap`) applies to text and
    numbers; a column typed as dates or timestamps is read as it is.
    """
    col = sql_identifier(column)
    upper = type_name.upper()
    if upper == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {col})"
    if upper.startswith("TIMESTAMP") or upper == "DATE":
        return f"CAST({col} AS TIMESTAMP)"
    text = upper == "VARCHAR" or upper.startswith("ENUM")
    if timestamp_format in UNIX_TIME_UNITS:
        if not (_numeric(type_name) or text):
            raise DataValidationError(
                f"column {column!r} (timestamp): data.columns.timestamp_format "
                f"{timestamp_format!r} reads numbers since 1970, but the column has type "
                f"{type_name}"
            )
        # In DOUBLE: exact for whole microseconds until year 2255, and never overflows.
        # Numbers in text (BigQuery's JSON exports give INT64 as strings, e.g. GA4's
        # event_timestamp): text that is no number is unparseable.
        unit = UNIX_TIME_UNITS[timestamp_format]
        number = f"TRY_CAST({col} AS DOUBLE)" if text else f"CAST({col} AS DOUBLE)"
        micros = f"TRY_CAST(round({number} * {unit}) AS BIGINT)"
        return f"CASE WHEN abs({micros}) < {_MAX_EPOCH_US} THEN make_timestamp({micros}) END"
    if timestamp_format is not None and (text or _numeric(type_name)):
        pattern = sql_literal(timestamp_format)
        parsed = f"try_strptime(CAST({col} AS VARCHAR), {pattern})"
        # A pattern with an offset or zone (%z, %Z) gives times with a time zone: in UTC.
        zoned = re.search("%[zZ]", timestamp_format)
        return f"timezone('UTC', {parsed})" if zoned else parsed
    if text:
        return f"timezone('UTC', TRY_CAST(CAST({col} AS VARCHAR) AS TIMESTAMPTZ))"
    raise DataValidationError(
        f"column {column!r} (timestamp): expected datetimes or date strings, got type "
        f"{type_name}" + (NUMERIC_TIMESTAMP_HINT if _numeric(type_name) else "")
    )


#: Said where the timestamp column holds its own name as a value (checked first: a
#: repeated header line fails there before any other column).
REPEATED_HEADER_HINT = (
    "; the column's own name as a value is the header line again: CSV files concatenated "
    "with their headers? Remove the repeated header lines, or give the files as a glob or a "
    "directory, each read with its own header"
)

#: Said where a timestamp column holds numbers and no ``timestamp_format`` reads them.
NUMERIC_TIMESTAMP_HINT = (
    " (numbers such as 19970101 or 1433221332117 are not read as dates: set "
    "data.columns.timestamp_format, e.g. '%Y%m%d' or 'unix_ms')"
)


def check_timestamp_pattern(con: duckdb.DuckDBPyConnection, columns: ColumnMap) -> None:
    """Refuse a ``timestamp_format`` pattern DuckDB cannot read, before any scan.

    Its shape is checked here too (not only when params.yaml is read): a ``ColumnMap``
    given to the Python API gets the same refusal.
    """
    check_timestamp_format(columns.timestamp_format)
    pattern = columns.timestamp_format
    if pattern is None or pattern in UNIX_TIME_UNITS:
        return
    try:
        con.execute("SELECT try_strptime('', ?)", [pattern]).fetchall()
    except duckdb.Error as exc:
        raise ConfigError(
            f"data.columns.timestamp_format: {pattern!r} cannot be read: {_first_line(exc)}"
        ) from None


def _float_ids(type_name: str) -> bool:
    """Whether user ids of this type are numbers that may hold whole values (``12345.0``).

    pandas reads an integer id column with a missing value as float64, and DuckDB's CSV
    reader types ``12345.0`` as DOUBLE: such ids are read as integers, and a value that
    is not a whole number (or does not fit 64 bits) is refused (see ``bad_user``).
    """
    upper = type_name.upper()
    return upper in ("FLOAT", "DOUBLE", "REAL") or upper.startswith("DECIMAL")


def _user_expr(column: str, type_name: str) -> str:
    upper = type_name.upper()
    integer = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}
    if upper in integer:
        return f"CAST({sql_identifier(column)} AS BIGINT)"
    if _float_ids(type_name):
        # TRY_CAST: a value out of range is NULL here, and counted as bad before any use.
        return f"TRY_CAST({sql_identifier(column)} AS BIGINT)"
    if upper in ("VARCHAR", "UBIGINT", "HUGEINT") or upper.startswith("ENUM"):
        return f"CAST({sql_identifier(column)} AS VARCHAR)"
    raise DataValidationError(
        f"column {column!r} (user_id): expected strings or integers (or whole numbers stored "
        f"as floats), got type {type_name}"
    )


def _numeric(type_name: str) -> bool:
    upper = type_name.upper()
    return upper.startswith("DECIMAL") or upper in {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
        "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE",
    }  # fmt: skip


def _number_expr(column: str, type_name: str, role: str, decimal_comma: bool = False) -> str:
    """Return the SQL reading a numeric column as DOUBLE (NULL where its text is no number).

    With ``decimal_comma``, text reads ``12,5`` as 12.5 (:func:`decimal_text_sql`).
    """
    if _numeric(type_name):
        return f"CAST({sql_identifier(column)} AS DOUBLE)"
    if type_name.upper() == "VARCHAR":
        text = sql_identifier(column)
        return f"TRY_CAST({decimal_text_sql(text) if decimal_comma else text} AS DOUBLE)"
    raise DataValidationError(f"column {column!r} ({role}): expected numbers, got type {type_name}")


def decimal_text_sql(text: str) -> str:
    """Return the SQL turning a decimal comma into a point, for text with no dot (every engine).

    Text holding a dot as well (``1.234,5``) is left with its comma, so it is no number.

    Examples
    --------
    >>> import duckdb
    >>> values = ["12,5", "-3", "1.234,5", "7,"]
    >>> duckdb.sql(f"SELECT TRY_CAST({decimal_text_sql('v')} AS DOUBLE) FROM "
    ...            f"unnest({values}) AS t(v)").fetchall()
    [(12.5,), (-3.0,), (None,), (None,)]
    """
    comma = f"regexp_full_match({text}, '\\s*-?\\d*,\\d+\\s*')"
    return f"CASE WHEN {comma} THEN replace({text}, ',', '.') ELSE {text} END"


def check_quantity_has_price(columns: ColumnMap, has_revenue: bool, present: Sequence[str]) -> None:
    """Refuse a quantity column without the unit price it multiplies (shared by every engine).

    Examples
    --------
    >>> check_quantity_has_price(ColumnMap(quantity="qty"), False, ["user_id", "qty"])
    Traceback (most recent call last):
    ...
    segmentkit.errors.DataValidationError: column 'qty' (quantity) multiplies the unit price ...
    """
    if columns.quantity is None or has_revenue:
        return
    price = "not mapped" if columns.revenue is None else f"{columns.revenue!r}, absent"
    raise DataValidationError(
        f"column {columns.quantity!r} (quantity) multiplies the unit price in the revenue "
        f"column ({price}); columns present: {list(present)} (map data.columns.revenue to the "
        "unit price)"
    )


def _samples(con: duckdb.DuckDBPyConnection, source_sql: str, condition: str, column: str) -> str:
    rows = con.execute(
        f"""
        SELECT _row, CAST({sql_identifier(column)} AS VARCHAR) AS value
        FROM (SELECT row_number() OVER () - 1 AS _row, * FROM {source_sql})
        WHERE {condition}
        ORDER BY _row
        LIMIT {_SAMPLE_ROWS}
        """
    ).fetchall()
    return ", ".join(f"row {row}: {value!r}" for row, value in rows)


def check_mapped_columns(columns: ColumnMap, present: Sequence[str]) -> None:
    """Refuse a log that lacks a required column or a column mapped explicitly in params.

    Shared by every engine, so that the messages are the same everywhere.

    Raises
    ------
    DataValidationError
        Naming the missing role(s) and column(s) and listing the columns present.

    Examples
    --------
    >>> check_mapped_columns(ColumnMap(), ["user_id", "timestamp", "event"])
    >>> check_mapped_columns(ColumnMap(), ["user_id", "event"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmentkit.errors.DataValidationError: missing required column(s) timestamp ('timestamp'); ...
    """
    required = {"user_id": columns.user_id, "timestamp": columns.timestamp}
    if columns.event is not None:
        required["event"] = columns.event
    if columns.quantity is not None:
        required["quantity"] = columns.quantity
    names = [str(name) for name in present]
    missing = [name for name in required.values() if name not in present]
    if missing:
        listed = [f"{role} ({name!r})" for role, name in required.items() if name in missing]
        raise DataValidationError(
            f"missing required column(s) {', '.join(listed)}; columns present: {list(present)}"
            + (_column_hint(missing, names) or _header_hint(names, columns))
        )
    # A role given a name of its own (revenue: amount) is meant, wherever it was set
    # (params.yaml or ColumnMap(...)): absent, it is refused, never left out silently.
    named = {role for role in ("revenue", "session_id") if getattr(columns, role) != role}
    if columns.quantity is not None:  # an absent price: check_quantity_has_price says more
        named.discard("revenue")
    absent_roles = [
        role
        for role in sorted(set(columns.explicit) | named)
        if getattr(columns, role) is not None and getattr(columns, role) not in present
    ]
    if absent_roles:
        absent = [f"{role} ({getattr(columns, role)!r})" for role in absent_roles]
        raise DataValidationError(
            f"column(s) {', '.join(absent)} mapped in data.columns are absent; columns present: "
            f"{list(present)} (map the role to null if the log has no such column)"
            + _column_hint([getattr(columns, role) for role in absent_roles], names)
        )


def _column_hint(missing: Sequence[str], present: Sequence[str]) -> str:
    """Point at present columns that spell missing ones otherwise ('UserID' for 'user_id').

    Examples
    --------
    >>> _column_hint(["user_id"], ["UserID", "timestamp"])
    "; did you mean 'UserID' for 'user_id'? (column names must match exactly)"
    """
    hint = did_you_mean(missing, present)
    return f"{hint} (column names must match exactly)" if hint else ""


#: A column name that reads as a number or a date: a value, not a name.
_VALUE_LIKE = re.compile(
    r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T].*)?"
)


def _header_hint(present: Sequence[str], columns: ColumnMap) -> str:
    """Point at column names that are values: a file without a header row read as having one.

    Examples
    --------
    >>> _header_hint(["618", "4253121", "pv", "1511544070"], ColumnMap())  # doctest: +ELLIPSIS
    "; column names such as '618', '4253121', '1511544070' look like values, not names: ...
    >>> _header_hint(["UserID", "when"], ColumnMap())
    ''
    """
    named = columns.csv_header or ()
    values = [n for n in present if _VALUE_LIKE.fullmatch(n.strip()) and n not in named]
    if not values:
        return ""
    if columns.csv_header is not None:
        return (
            f"; column names such as {quoted_names(values, 3)} look like values, not names: "
            "data.columns.csv_header names the columns of CSV files only"
        )
    return (
        f"; column names such as {quoted_names(values, 3)} look like values, not names: was "
        "a first line of data read as the header? For CSV files without a header row, name "
        f"their {len(present)} columns in order in data.columns.csv_header"
    )


def did_you_mean(missing: Sequence[str], present: Iterable[Any]) -> str:
    """``; did you mean 'X' for 'x'?`` for names of ``present`` spelling missing ones otherwise.

    Examples
    --------
    >>> did_you_mean(["add_to_cart", "wishlist"], ["Add-To-Cart", "view"])
    "; did you mean 'Add-To-Cart' for 'add_to_cart'?"
    >>> did_you_mean(["wishlist"], ["view"])
    ''
    """
    renamed = respelled_names(list(missing), present)
    if not renamed:
        return ""
    return (
        "; did you mean "
        + ", ".join(f"{spelled!r} for {name!r}" for name, spelled in renamed.items())
        + "?"
    )


def check_invalid_values(
    columns: ColumnMap,
    counts: Mapping[str, int],
    *,
    rows_usable: int,
    on_invalid: str,
    example: Callable[..., str],
) -> None:
    """Raise on unreadable values, the same rules and messages for every engine.

    Parameters
    ----------
    columns : ColumnMap
        The contract's columns as named in the log.
    counts : mapping of str to int
        ``bad_ts``, ``bad_rev``, ``bad_amount``, ``null_event``, ``null_user``,
        ``null_ts`` and ``invalid`` (rows without a user id or a timestamp); optionally
        ``bad_user`` (numeric user ids that are not whole 64-bit numbers) and ``bad_qty``
        (quantities that are not numbers).
    rows_usable : int
        Rows with a user id and a timestamp before the cut-off.
    on_invalid : {"drop", "error"}
        Whether null user ids, timestamps and event names are errors.
    example : callable
        ``example(kind)`` for ``kind`` in ``bad_ts, bad_rev, bad_qty, bad_amount,
        null_event, bad_user``,
        or ``example("null", column)``: a few offending values, as text.

    Raises
    ------
    DataValidationError
        Naming the column, the number of rows and examples.
    """
    if counts.get("bad_user"):
        raise DataValidationError(
            f"column {columns.user_id!r} (user_id): expected strings or integers, but "
            f"{counts['bad_user']} numeric value(s) are not whole numbers within 64 bits, "
            f"e.g. {example('bad_user')} (ids that look like decimals, such as GA4's "
            "user_pseudo_id 1026454.4271112065, are text: give the column as text, e.g. "
            "pandas' read_csv(..., dtype={" + repr(columns.user_id) + ": str}))"
        )
    if counts["bad_ts"]:
        samples = example("bad_ts")
        # Slashed dates (12/1/2010) are the common export format that cannot be read
        # safely: say why and what to do.
        if repr(columns.timestamp) in samples:
            hint = REPEATED_HEADER_HINT
        elif columns.timestamp_format is not None:
            hint = f"; expected data.columns.timestamp_format {columns.timestamp_format!r}"
        elif "/" in samples:
            hint = (
                "; expected ISO 8601 dates or datetimes (YYYY-MM-DD[ HH:MM[:SS]]): day and "
                "month order of slashed dates cannot be guessed: set "
                "data.columns.timestamp_format (e.g. '%m/%d/%Y %H:%M') or convert them"
            )
        elif re.search(r"'-?\d{6,}(\.\d*)?'", samples):  # digits as text: CDNOW, epoch exports
            hint = NUMERIC_TIMESTAMP_HINT
        else:
            hint = ""
        raise DataValidationError(
            f"column {columns.timestamp!r} (timestamp): {counts['bad_ts']} value(s) cannot be "
            f"parsed as a timestamp, e.g. {samples}{hint}"
        )
    if counts["bad_rev"]:
        shown = example("bad_rev")
        comma = re.search(r"'\s*-?\d*,\d+\s*'", shown) and not columns.decimal_comma
        raise DataValidationError(
            f"column {columns.revenue!r} (revenue): {counts['bad_rev']} value(s) are not "
            f"numeric, e.g. {shown}; expected plain numbers such as -1234.5 "
            "(no thousands separators, decimal commas or currency signs)"
            + ("; for decimal commas set data.columns.decimal_comma: true" if comma else "")
        )
    if counts.get("bad_qty"):
        raise DataValidationError(
            f"column {columns.quantity!r} (quantity): {counts['bad_qty']} value(s) are not "
            f"numeric, e.g. {example('bad_qty')}; expected plain numbers such as -3"
        )
    if counts["bad_amount"]:
        times = f" times quantity {columns.quantity!r}" if columns.quantity is not None else ""
        raise DataValidationError(
            f"column {columns.revenue!r} (revenue){times}: {counts['bad_amount']} value(s) are "
            f"NaN, infinite or not below {MAX_REVENUE:.0e} in absolute value, e.g. "
            f"{example('bad_amount')}"
        )
    null_event = counts["null_event"]
    if null_event and null_event == rows_usable:
        raise DataValidationError(
            f"column {columns.event!r} (event): all {null_event} value(s) are null; map "
            "data.columns.event to null for a transaction table without event names"
        )
    if on_invalid == "error" and null_event:
        raise DataValidationError(
            f"column {columns.event!r}: {null_event} null value(s) (on_invalid=error), "
            f"e.g. {example('null_event')}"
        )
    if on_invalid == "error" and counts["invalid"]:
        null_user = counts["null_user"]
        column = columns.user_id if null_user else columns.timestamp
        raise DataValidationError(
            f"column {column!r}: {null_user if null_user else counts['null_ts']} null value(s) "
            f"(on_invalid=error), e.g. {example('null', column)}"
        )


def check_revenue_read_as_trained(trained: ColumnMap | None, given: ColumnMap) -> None:
    """Refuse to score with revenue read otherwise than the model was trained with.

    ``revenue_events`` and ``refund_events`` decide which amounts count and with
    which sign: scored with others (a ``columns=`` or a params.yaml mapping that
    leaves them out), the value features would mean something else than the model
    learnt, and the scores would be confidently wrong.

    Examples
    --------
    >>> check_revenue_read_as_trained(ColumnMap(revenue_events=("purchase",)), ColumnMap())
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmentkit.errors.DataValidationError: data.columns.revenue_events: the model was trained ...
    """
    if trained is None:
        return
    for setting in ("revenue_events", "refund_events"):
        then, now = getattr(trained, setting), getattr(given, setting)
        if set(then or ()) != set(now or ()):
            raise DataValidationError(
                f"data.columns.{setting}: the model was trained with "
                f"{list(then) if then is not None else None}, this mapping gives "
                f"{list(now) if now is not None else None}; revenue would be read otherwise "
                "than the model learnt it. Score with the model's own mapping (no "
                f"data.columns) or the same {setting}"
            )


def check_revenue_selection(columns: ColumnMap, has_revenue: bool) -> None:
    """Refuse ``revenue_events`` that cannot select revenue from this log (every engine).

    The rules of :func:`segmentkit.config.check_revenue_events` (for a ``ColumnMap``
    built in code), and a log without the revenue column the events select from.
    """
    check_revenue_events(columns, DataValidationError)
    if columns.revenue_events is not None and not has_revenue:
        raise DataValidationError(
            f"data.columns.revenue_events ({list(columns.revenue_events)}) selects the rows "
            f"whose revenue counts, but the log has no revenue column {columns.revenue!r}: map "
            "data.columns.revenue to the amount column, or revenue_events to null"
        )


def check_revenue_by_event(
    columns: ColumnMap,
    paid_events: Iterable[Any],
    event_names: Callable[[], Iterable[Any]],
    paid_rows: Callable[[], Mapping[str, tuple[int, int]]],
) -> None:
    """Refuse revenue that is a price carried on every event (shared by every engine).

    Revenue is summed over rows. A log that gives a product's price on every row
    (views, carts and purchases alike, as REES46's exports do) would make every
    viewed product money spent and every view an order: a confident wrong value
    segment. Such a price shows in the data: one user's same amount recurs on rows of
    several events (the product viewed, carted, then bought), where payments of
    different kinds (a purchase and a subscription renewal) rarely share an amount.
    So, without ``data.columns.revenue_events``, a log whose amounts above 0 lie on
    rows of two or more events is refused when, for one of those events, at least
    :data:`RECURRING_AMOUNT_SHARE` of its rows with an amount share their user and
    amount with a row of another event. With ``revenue_events`` (or ``refund_events``),
    a chosen event that the log spells otherwise is refused: its revenue would be
    ignored (its refunds counted as spending) without a word. An event named as a
    refund with amounts above 0 is refused unless one of the two settings names it
    (:func:`_check_refunds_not_paid`).

    Parameters
    ----------
    columns : ColumnMap
        The mapping the log is read with.
    paid_events : iterable
        Events of the clean rows whose revenue is above 0 (after ``revenue_events`` and
        ``refund_events``).
    event_names : callable
        Returns every event of the clean rows (only called with ``revenue_events`` or
        ``refund_events``).
    paid_rows : callable
        Returns, per event, its clean rows with revenue above 0 and how many of them
        share their user and amount with a row of another event (only called when
        amounts lie on two or more events).

    Raises
    ------
    DataValidationError
        Naming the revenue column, the events and their rows, and the setting to use.

    Examples
    --------
    >>> columns = ColumnMap(revenue="price", event="event_type")
    >>> renewals = {"purchase": (40, 1), "renewal": (12, 1)}
    >>> check_revenue_by_event(columns, ["purchase", "renewal"], list, lambda: renewals)
    >>> funnel = {"view": (90, 10), "purchase": (10, 9)}
    >>> check_revenue_by_event(
    ...     columns, ["view", "purchase"], list, lambda: funnel
    ... )  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmentkit.errors.DataValidationError: column 'price' (revenue): one user's same amount ...
    """
    if columns.revenue_events is not None or columns.refund_events is not None:
        _check_spelled_as_the_log(columns, [str(n) for n in event_names() if n is not None])
    paid = {str(name) for name in paid_events if name is not None}
    _check_refunds_not_paid(columns, paid)
    if columns.revenue_events is not None or len(paid) < 2:
        return
    rows = paid_rows()
    if not any(shared >= RECURRING_AMOUNT_SHARE * n > 0 for n, shared in rows.values()):
        return  # payments of several kinds: every amount counts
    ranked = sorted(rows.items(), key=lambda item: (-item[1][0], item[0]))
    shown = ", ".join(
        f"{name!r} {shared:,} of {n:,} row{'' if n == 1 else 's'}"
        for name, (n, shared) in ranked[:8]
    )
    more = f" and {len(ranked) - 8} more" if len(ranked) > 8 else ""
    twins = sorted(
        {tuple(sorted([name, *other_spellings(name, rows)])) for name in rows}
        - {(name,) for name in rows}
    )
    spelled = "".join(
        f" ({' and '.join(map(repr, group))} spell one event: give the log one spelling)"
        for group in twins
    )
    raise DataValidationError(
        f"column {columns.revenue!r} (revenue): one user's same amount recurs on rows of "
        f"{len(ranked)} events ({shown}{more} with an amount above 0 share it with "
        "another event): a price carried on every event, not money paid; summed, "
        "viewed or carted products would count as spending. Name the events whose "
        "amounts were paid (and refunded) in data.columns.revenue_events, e.g. [purchase]" + spelled
    )


def _check_spelled_as_the_log(columns: ColumnMap, names: Sequence[str]) -> None:
    """Refuse ``revenue_events`` or ``refund_events`` naming an event the log spells otherwise."""
    settings = {
        "revenue_events": (columns.revenue_events, "the revenue of those rows would be ignored"),
        "refund_events": (columns.refund_events, "those refunds would count as spending"),
    }
    for setting, (named, consequence) in settings.items():
        renamed = respelled_names(sorted(set(named or ()) - set(names)), names)
        if renamed:
            pairs = ", ".join(f"{name!r} as {spelled!r}" for name, spelled in renamed.items())
            raise DataValidationError(
                f"data.columns.{setting}: this log spells {pairs}; {consequence}. Spell the "
                "events as the log does"
            )


def _refund_like(name: str) -> bool:
    """Whether an event name says refund (``refund``, ``Order Refunded``).

    Examples
    --------
    >>> [_refund_like(n) for n in ["refund", "Order Refunded", "refunds", "return_visit"]]
    [True, True, True, False]
    """
    return bool({"refund", "refunds", "refunded"} & set(slug(name).split("_")))


def _check_refunds_not_paid(columns: ColumnMap, paid: set[str]) -> None:
    """Refuse a refund event whose amounts above 0 would be summed as spending.

    An event named as a refund (:func:`_refund_like`) with amounts above 0 that
    ``refund_events`` does not name is refunds given as positive amounts (GA4's
    ``refund``): summed, they would add to spending. An event that ``revenue_events``
    names explicitly is counted as its amounts say.
    """
    named = set(columns.refund_events or ()) | set(columns.revenue_events or ())
    positive = sorted(name for name in paid if _refund_like(name) and name not in named)
    if positive:
        raise DataValidationError(
            f"column {columns.revenue!r} (revenue): event(s) {quoted_names(positive, 5)} have "
            "amounts above 0, which would be summed as spending: refunds given as positive "
            "amounts? Name them in data.columns.refund_events (their amounts are then read as "
            "money returned), or, if they are money paid, in data.columns.revenue_events"
        )


#: Days without any event that set rows apart from the rest of a log as strays.
STRAY_GAP_DAYS = 365
#: Largest share of a log's rows that can be strays: more is a part of the log.
STRAY_SHARE = 0.001


@dataclass(frozen=True)
class StrayRows:
    """Rows dated far away from the rest of the log (see :func:`find_stray_rows`).

    Attributes
    ----------
    first_day, last_day : datetime.date
        The first and last days of the log's bulk, the rows kept.
    days : tuple of datetime.date
        The days of the strays.
    rows : int
        How many rows the strays are.
    """

    first_day: dt.date
    last_day: dt.date
    days: tuple[dt.date, ...]
    rows: int

    def bulk_bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """Return the bulk as times: its first midnight and the midnight after its last day."""
        start = dt.datetime.combine(self.first_day, dt.time())
        return start, dt.datetime.combine(self.last_day + dt.timedelta(days=1), dt.time())


def could_hold_strays(first: dt.datetime | None, last: dt.datetime | None) -> bool:
    """Whether the log spans enough days for a gap of :data:`STRAY_GAP_DAYS` (else no day count)."""
    if first is None or last is None:
        return False
    return (last.date() - first.date()).days > STRAY_GAP_DAYS


def find_stray_rows(day_rows: Mapping[dt.date, int]) -> StrayRows | None:
    """Find the rows a placeholder date or a wrong clock set far away from the log.

    The days with events are cut at every stretch of :data:`STRAY_GAP_DAYS` or more
    days without any event; the piece with the most rows is the log (the latest of
    equal pieces). The other pieces are strays when together they hold at most
    :data:`STRAY_SHARE` of the rows: an epoch-0 ``1970-01-01`` or a ``1902`` in a log
    of 2017, which would make their users decades old and stretch every time scale.
    More rows than that on the far side of a year's silence are a part of the log
    (an older export, a business that paused), kept as they are.

    Parameters
    ----------
    day_rows : mapping of datetime.date to int
        Rows per day with events.

    Returns
    -------
    StrayRows or None
        None when there is no stray.

    Examples
    --------
    >>> import datetime as dt
    >>> days = {dt.date(2024, 12, 1) + dt.timedelta(days=i): 1000 for i in range(9)}
    >>> strays = find_stray_rows({**days, dt.date(1970, 1, 1): 2, dt.date(2008, 5, 17): 1})
    >>> strays.rows, [day.isoformat() for day in strays.days], strays.first_day.isoformat()
    (3, ['1970-01-01', '2008-05-17'], '2024-12-01')
    >>> find_stray_rows({**days, dt.date(1970, 1, 1): 10}) is None  # 10 of 9,010 rows: a part
    True
    """
    days = sorted(day_rows)
    pieces: list[list[dt.date]] = [[days[0]]] if days else []
    for previous, day in itertools.pairwise(days):
        if (day - previous).days - 1 >= STRAY_GAP_DAYS:
            pieces.append([])
        pieces[-1].append(day)
    if len(pieces) < 2:
        return None
    rows = [sum(day_rows[day] for day in piece) for piece in pieces]
    bulk = max(range(len(pieces)), key=lambda i: (rows[i], i))
    outside = sum(rows) - rows[bulk]
    if outside > STRAY_SHARE * sum(rows):
        return None
    strays = tuple(day for i, piece in enumerate(pieces) if i != bulk for day in piece)
    return StrayRows(pieces[bulk][0], pieces[bulk][-1], strays, int(outside))


def check_stray_rows(
    strays: StrayRows, rows_read: int, columns: ColumnMap, on_invalid: str
) -> None:
    """Warn that the strays are dropped, or refuse them (``on_invalid="error"``).

    Shared by every engine, so that the messages are the same everywhere.
    """
    share = strays.rows / rows_read
    percent = f"{share:.2%}" if share >= 1e-4 else "under 0.01%"
    said = (
        f"{strays.rows:,} of {rows_read:,} rows ({percent}) "
        f"dated {quoted_names([day.isoformat() for day in strays.days], 5)} (column "
        f"{columns.timestamp!r}), {STRAY_GAP_DAYS} or more days without any event away from "
        f"the rest of the log ({strays.first_day} to {strays.last_day})"
    )
    if on_invalid == "error":
        raise DataValidationError(
            f"events: {said}: placeholder dates or a wrong clock? data.on_invalid: drop drops "
            "and counts them"
        )
    warnings.warn(
        f"dropped {said}: placeholder dates or a wrong clock; they count in no feature, segment "
        "or label (data.on_invalid: error refuses such a log instead)",
        SegmentkitWarning,
        stacklevel=3,
    )


#: Names of the columns exports identify anonymous users or devices by (Segment's
#: ``anonymousId``, Amplitude's ``device_id`` and ``amplitude_id``, GA4's
#: ``user_pseudo_id``, web analytics' visitor and cookie ids).
_ANONYMOUS_IDS = re.compile(r"anonym|device|pseudo|visitor|cookie|client_?id|amplitude_id", re.I)


def anonymous_id_columns(source_columns: Sequence[str], columns: ColumnMap) -> list[str]:
    """Return the unmapped columns whose names say they identify anonymous users or devices.

    Examples
    --------
    >>> anonymous_id_columns(["userId", "anonymousId", "event", "device_id"], ColumnMap("userId"))
    ['anonymousId', 'device_id']
    """
    mapped = set(mapped_names(columns))
    return [name for name in source_columns if name not in mapped and _ANONYMOUS_IDS.search(name)]


def dropped_rows_message(
    report: DataQualityReport, columns: ColumnMap, anonymous_ids: Sequence[str] = ()
) -> str | None:
    """Say how many rows were dropped for a missing user id, timestamp or event name.

    ``anonymous_ids`` are columns that hold a value on every row without a user id
    (an export's anonymous or device id): the message names them as a way to keep
    those rows.

    Returns
    -------
    str or None
        One sentence with each count, its share of the rows read and the column,
        and how to refuse such rows instead; ``None`` when nothing was dropped.

    Examples
    --------
    >>> report = DataQualityReport(rows_read=400, null_user_id=100, null_timestamp=0,
    ...     duplicate_rows=0, at_or_after_as_of=0, negative_revenue_rows=0, rows_clean=300,
    ...     users=20, first_event=None, last_event=None)
    >>> dropped_rows_message(report, ColumnMap(user_id="CustomerID"))  # doctest: +ELLIPSIS
    "dropped 100 of 400 rows (25.0%) without a user id (column 'CustomerID'): ..."
    """
    counts = (
        (report.null_user_id, "a user id", columns.user_id),
        (report.null_timestamp, "a timestamp", columns.timestamp),
        (report.null_event, "an event name", columns.event),
    )
    parts = [
        f"{n:,} of {report.rows_read:,} rows ({n / report.rows_read:.1%}) without {what} "
        f"(column {column!r})"
        for n, what, column in counts
        if n
    ]
    if not parts:
        return None
    keep = ""
    if report.null_user_id and anonymous_ids:
        keep = (
            f"; column(s) {quoted_names(list(anonymous_ids), 3)} hold a value on every row "
            "without a user id (anonymous users or devices?): map data.columns.user_id to one "
            "of them to keep those rows (every user is then known by it)"
        )
    return (
        f"dropped {' and '.join(parts)}: they count in no feature, segment or label "
        f"(data.on_invalid: error refuses such a log instead){keep}"
    )


def check_no_future_events(
    cutoff: dt.datetime | None,
    last: dt.datetime | None,
    rows_after: Callable[[dt.datetime], int],
    example: Callable[[dt.datetime], str],
    today: dt.date | None = None,
) -> None:
    """Refuse events dated after today when the snapshot is left to the log's end.

    Without ``as_of`` the snapshot is the midnight after the last event: one row
    stamped 2099 by a wrong device clock would put it in 2099, and every user would
    look inactive since (a confident wrong answer for everyone). A day of grace covers
    time zones. With ``as_of`` given, later rows are excluded and counted as usual.
    Shared by every engine.

    Parameters
    ----------
    cutoff : datetime, optional
        ``as_of`` as given (``None``: the snapshot defaults to the log's end).
    last : datetime, optional
        The last clean event.
    rows_after : callable
        Given a time, the clean rows at or after it (only called to refuse).
    example : callable
        Given a time, a few offending values, as text (only called to refuse).
    today : date, optional
        Today's date in UTC (default: the clock's).

    Examples
    --------
    >>> at = dt.datetime(2099, 6, 1, 10)
    >>> check_no_future_events(None, at, lambda t: 1, lambda t: "row 7: '2099-06-01 10:00'",
    ...                        today=dt.date(2026, 11, 30))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmentkit.errors.DataValidationError: events: 1 row(s) are dated after today ...
    >>> check_no_future_events(None, dt.datetime(2026, 12, 1, 23), int, str,
    ...                        today=dt.date(2026, 11, 30))  # within the day of grace
    """
    if cutoff is not None or last is None:
        return
    today = today or dt.datetime.now(dt.UTC).date()
    limit = dt.datetime.combine(today + dt.timedelta(days=2), dt.time())
    if last < limit:
        return
    raise DataValidationError(
        f"events: {rows_after(limit):,} row(s) are dated after today ({today}), the last at "
        f"{last.isoformat(sep=' ')}, e.g. {example(limit)}: a wrong clock? The snapshot "
        f"would default to {midnight_after(last.isoformat()).date()}, the midnight after the "
        "last event, and every user would look inactive since. Set data.as_of (--as-of) to "
        "the log's real end: rows at or after it are excluded and counted"
    )


def check_enough_left(
    report: DataQualityReport, cutoff: dt.datetime | None, min_users: int
) -> None:
    """Refuse a log with no clean events, or fewer users than needed (every engine).

    Raises
    ------
    InsufficientDataError
        Saying what cleaning removed, or how many users were found.
    """
    if report.rows_clean == 0:
        reason = f" before as_of {cutoff.date()}" if cutoff is not None else ""
        raise InsufficientDataError(
            f"no events left after cleaning{reason}: {report.rows_read} rows read, "
            f"{report.null_user_id} null user ids, {report.null_timestamp} null timestamps, "
            f"{report.null_event} null events, {report.at_or_after_as_of} at or after as_of"
        )
    if report.users < min_users:
        raise InsufficientDataError(
            f"found {report.users} user(s); at least {min_users} are needed"
        )


def load_events(
    source: EventSource,
    columns: ColumnMap | None = None,
    *,
    as_of: dt.date | dt.datetime | str | None = None,
    on_invalid: str = "drop",
    min_users: int = 1,
    con: duckdb.DuckDBPyConnection | None = None,
    check_duplicates: bool = True,
) -> EventLog:
    """Load an event log, check it against the data contract and clean it.

    Parameters
    ----------
    source : str, Path, pandas.DataFrame or duckdb.DuckDBPyRelation
        Parquet or CSV file or glob, a DataFrame, or a relation.
    columns : ColumnMap, optional
        Names of the contract's columns in ``source``. ``event=None`` reads a plain
        transaction table: every row becomes a ``purchase``.
    as_of : date-like, optional
        Snapshot time; events at or after it are excluded (and counted).
    on_invalid : {"drop", "error"}
        Rows with a null user id or timestamp are dropped and counted, or raise.
    min_users : int
        Fewest distinct users the caller needs. Above 1 the users are counted while
        validating; otherwise on first use of ``report`` (see :attr:`EventLog.report`).
    con : duckdb.DuckDBPyConnection, optional
        Connection to hold the clean table; a new one is opened by default.
    check_duplicates : bool
        Look for exact duplicate rows and drop them (default). The check reads one
        64-bit hash per kept row (8 bytes a row in memory) and looks for repeated
        hashes (one half of the hash range per core, bucket by bucket in a small
        table that stays in cache); only rows whose hash repeats are compared
        exactly, and the rest of a Parquet log is still read in place. It is most of
        validation's CPU time: on the 29.2M-event log of ``benchmarks/features.py``
        about 3.6 s of CPU (1.21 bare ``GROUP BY user_id`` counts, against 0.45 for
        every other check; 2 cores, load 4-7), of which DuckDB's scan of the row
        hashes is over half (``--floor``: 0.67 counts), and no extra peak memory.
        Turn it off only for logs known to be free of duplicates.

    Returns
    -------
    EventLog

    Raises
    ------
    DataValidationError
        A required column is missing, a timestamp cannot be parsed, revenue is not
        numeric, or (with ``on_invalid="error"``) a user id or timestamp is null.
    InsufficientDataError
        Nothing is left after cleaning, or fewer than ``min_users`` users.

    Examples
    --------
    >>> import pandas as pd
    >>> raw = pd.DataFrame({"user_id": ["a", "a", "b"],
    ...                     "timestamp": ["2024-01-01 10:00", "2024-01-01 10:00", "2024-01-02"],
    ...                     "event": ["view", "view", "purchase"]})
    >>> log = load_events(raw)
    >>> log.report.duplicate_rows, log.report.users
    (1, 2)
    """
    if on_invalid not in ("drop", "error"):
        raise DataValidationError(f"on_invalid: expected 'drop' or 'error', got {on_invalid!r}")
    columns = columns or ColumnMap()
    check_csv_header(columns, DataValidationError)
    con = con or connect()
    source_sql = _register_source(con, source, columns)
    try:
        schema = con.execute(f"DESCRIBE SELECT * FROM {source_sql}").fetchall()
    except duckdb.Error as exc:
        raise unreadable(exc) from None
    types = {row[0]: row[1] for row in schema}

    _check_columns_named_once(con, source, columns, list(types))
    check_mapped_columns(columns, list(types))
    has_revenue = columns.revenue is not None and columns.revenue in types
    has_session = columns.session_id is not None and columns.session_id in types

    check_timestamp_pattern(con, columns)
    ts_expr = timestamp_sql(columns.timestamp, types[columns.timestamp], columns.timestamp_format)
    user_expr = _user_expr(columns.user_id, types[columns.user_id])
    event_expr = (
        f"CAST({sql_identifier(columns.event)} AS VARCHAR)"
        if columns.event is not None
        else "'purchase'"
    )
    check_quantity_has_price(columns, has_revenue, list(types))
    revenue_expr = price_expr = "CAST(NULL AS DOUBLE)"
    if has_revenue:
        revenue_expr = price_expr = _number_expr(
            columns.revenue, types[columns.revenue], "revenue", columns.decimal_comma
        )
    if columns.quantity is not None:
        quantity_expr = _number_expr(
            columns.quantity, types[columns.quantity], "quantity", columns.decimal_comma
        )
        revenue_expr = f"(({price_expr}) * ({quantity_expr}))"
    check_revenue_selection(columns, has_revenue)
    if columns.revenue_events is not None:
        chosen = ", ".join(sql_literal(name) for name in columns.revenue_events)
        revenue_expr = f"(CASE WHEN ({event_expr}) IN ({chosen}) THEN {revenue_expr} END)"
    if columns.refund_events is not None:
        refunds = ", ".join(sql_literal(name) for name in columns.refund_events)
        revenue_expr = (
            f"(CASE WHEN ({event_expr}) IN ({refunds}) THEN -abs({revenue_expr}) "
            f"ELSE {revenue_expr} END)"
        )
    # Session ids keep their own type: hashing integers is much cheaper than strings.
    session_expr = sql_identifier(columns.session_id) if has_session else "CAST(NULL AS BIGINT)"

    cutoff = to_timestamp(as_of) if as_of is not None else None
    cutoff_sql = f"TIMESTAMP '{cutoff.isoformat(sep=' ')}'" if cutoff is not None else None
    user_col, ts_col = sql_identifier(columns.user_id), sql_identifier(columns.timestamp)
    # Parse failures: a value is present but does not convert.
    bad_ts = f"{ts_col} IS NOT NULL AND ({ts_expr}) IS NULL"
    bad_user = (
        f"{user_col} IS NOT NULL AND (NOT isfinite({user_col}) OR {user_col} <> trunc({user_col}) "
        f"OR ({user_expr}) IS NULL)"
        if _float_ids(types[columns.user_id])
        else "false"
    )
    bad_rev = (
        f"{sql_identifier(columns.revenue)} IS NOT NULL AND ({price_expr}) IS NULL"
        if has_revenue
        else "false"
    )
    bad_qty = (
        f"{sql_identifier(columns.quantity)} IS NOT NULL AND ({quantity_expr}) IS NULL"
        if columns.quantity is not None
        else "false"
    )
    late = f"{user_col} IS NOT NULL AND ({ts_expr}) >= {cutoff_sql}" if cutoff_sql else "false"
    keep_base = f"{user_col} IS NOT NULL AND {ts_col} IS NOT NULL"
    if cutoff_sql:
        keep_base += f" AND ({ts_expr}) < {cutoff_sql}"
    # A row without an event name is dropped and counted, like one without a user id.
    null_event = f"({event_expr}) IS NULL" if columns.event is not None else "false"
    keep = f"{keep_base} AND NOT ({null_event})"
    # Revenue is summed as DECIMAL(18, 6) in the features: NaN, infinity and amounts of
    # 1e12 or more do not fit (and are data errors, not amounts). isfinite, not only a
    # comparison: DuckDB may fold a comparison by Parquet statistics, which omit NaN.
    bad_amount = (
        f"({revenue_expr}) IS NOT NULL AND (NOT isfinite({revenue_expr}) "
        f"OR abs({revenue_expr}) >= {MAX_REVENUE:.0f})"
    )
    typed = (
        f"{user_expr} AS user_id, {ts_expr} AS timestamp, {event_expr} AS event, "
        f"{revenue_expr} AS revenue, {session_expr} AS session_id"
    )
    # Counting users hashes every user id: with min_users <= 1 the feature query,
    # which groups by user anyway, counts them (see EventLog.report).
    count_users = min_users > 1

    def scan(keep: str) -> dict[str, Any]:
        # One scan answers every question: each check is a named count over the source.
        # A new check is one more entry here and one test of its count below.
        checks = {
            "rows_read": "count(*)",
            "bad_ts": f"count(*) FILTER (WHERE {bad_ts})",
            "bad_user": f"count(*) FILTER (WHERE {bad_user})",
            "bad_rev": f"count(*) FILTER (WHERE {bad_rev})",
            "bad_qty": f"count(*) FILTER (WHERE {bad_qty})",
            "null_user": f"count(*) FILTER (WHERE {user_col} IS NULL)",
            "null_ts": f"count(*) FILTER (WHERE {ts_col} IS NULL)",
            "invalid": f"count(*) FILTER (WHERE {user_col} IS NULL OR {ts_col} IS NULL)",
            "after": f"count(*) FILTER (WHERE {late})",
            "first": f"min({ts_expr}) FILTER (WHERE {keep})",
            "last": f"max({ts_expr}) FILTER (WHERE {keep})",
            "negative": f"count(*) FILTER (WHERE {keep} AND ({revenue_expr}) < 0)",
            "bad_amount": f"count(*) FILTER (WHERE {keep} AND {bad_amount})",
            "null_event": f"count(*) FILTER (WHERE {keep_base} AND {null_event})",
            # The feature builder needs the event names; knowing them here saves it a scan.
            "event_names": f"list(DISTINCT {event_expr}) FILTER (WHERE {keep})",
        }
        if has_revenue and columns.event is not None:
            # The events with amounts above 0 (see check_revenue_by_event): 0.10 s on the
            # 29.2M events of benchmarks/features.py, over a 0.26 s scan.
            paid = f"{keep} AND ({revenue_expr}) > 0"
            checks["paid_events"] = f"list(DISTINCT {event_expr}) FILTER (WHERE {paid})"
        if count_users:
            checks["users"] = f"count(DISTINCT {user_expr}) FILTER (WHERE {keep})"
        try:
            values = con.execute(
                f"SELECT {', '.join(checks.values())} FROM {source_sql}"
            ).fetchall()[0]
        except duckdb.Error as exc:
            raise unreadable(exc) from None
        return dict(zip(checks, values, strict=True))

    found = scan(keep)
    rows_read, invalid, after = found["rows_read"], found["invalid"], found["after"]
    null_user, null_ts, users = found["null_user"], found["null_ts"], found.get("users", 0)
    negative, first, last = found["negative"], found["first"], found["last"]
    n_null_event = found["null_event"]
    examples = {
        "bad_ts": (bad_ts, columns.timestamp),
        "bad_user": (bad_user, columns.user_id),
        "bad_rev": (bad_rev, columns.revenue),
        "bad_qty": (bad_qty, columns.quantity),
        "bad_amount": (f"({keep}) AND {bad_amount}", columns.revenue),
        "null_event": (f"({keep_base}) AND {null_event}", columns.event),
    }

    def example(kind: str, column: str | None = None) -> str:
        if kind in examples:
            return _samples(con, source_sql, *examples[kind])
        return _samples(con, source_sql, f"{sql_identifier(column)} IS NULL", column)

    check_invalid_values(
        columns,
        found,
        rows_usable=rows_read - invalid - after,
        on_invalid=on_invalid,
        example=example,
    )
    strays = None
    if could_hold_strays(first, last):
        day_rows = con.execute(
            f"SELECT CAST(({ts_expr}) AS DATE), count(*) FROM {source_sql} WHERE {keep} "
            "GROUP BY ALL"
        ).fetchall()
        strays = find_stray_rows(dict(day_rows))
    if strays is not None:
        check_stray_rows(strays, rows_read, columns, on_invalid)
        # The log is its bulk: every check is read again without the strays.
        start, end = (sql_timestamp(day) for day in strays.bulk_bounds())
        keep = f"({keep}) AND ({ts_expr}) >= {start} AND ({ts_expr}) < {end}"
        found = scan(keep)
        negative, first, last = found["negative"], found["first"], found["last"]
        users = found.get("users", 0)
    n_stray = strays.rows if strays is not None else 0

    def kept_from(limit: dt.datetime) -> str:
        return f"({keep}) AND ({ts_expr}) >= {sql_timestamp(limit)}"

    check_no_future_events(
        cutoff,
        last,
        lambda limit: con.execute(
            f"SELECT count(*) FROM {source_sql} WHERE {kept_from(limit)}"
        ).fetchall()[0][0],
        lambda limit: _samples(con, source_sql, kept_from(limit), columns.timestamp),
    )

    def paid_rows() -> dict[str, tuple[int, int]]:
        paid = (
            f"SELECT {user_expr} AS u, {event_expr} AS e, {revenue_expr} AS r "
            f"FROM {source_sql} WHERE {keep} AND ({revenue_expr}) > 0"
        )
        rows = con.execute(
            f"WITH paid AS ({paid}), kinds AS (SELECT u, r, count(DISTINCT e) AS n FROM paid "
            "GROUP BY u, r) SELECT e, count(*), count(*) FILTER (WHERE n > 1) "
            "FROM paid JOIN kinds USING (u, r) GROUP BY e"
        ).fetchall()
        return {str(name): (int(n), int(shared)) for name, n, shared in rows}

    check_revenue_by_event(
        columns, found.get("paid_events") or (), lambda: found["event_names"] or (), paid_rows
    )

    table = f"_sk_events_{next(_table_ids)}"
    kept = rows_read - invalid - after - n_null_event - n_stray
    if kept == rows_read:
        # Every row is kept: no filter, so that later scans (the features read the
        # clean log twice) do not decode the event column only to test it for null.
        keep = "true"
    # An exact duplicate is equal in every column of the source, unmapped ones included.
    unmapped = [sql_identifier(name) for name in unmapped_columns(list(types), columns)]
    row_hash = (
        f"hash({user_expr}, {ts_expr}, {event_expr}, {revenue_expr}, {session_expr}"
        + "".join(f", {column}" for column in unmapped)
        + ")"
    )
    clean_sql = f"SELECT {typed} FROM {source_sql} WHERE {keep}"
    duplicates = 0
    repeated, order_times_unique = None, None
    if check_duplicates:
        # The same scan tells whether an order has several lines (rows with revenue at one
        # user and time): if none has, the features count orders as rows, a grouping less.
        order_key = f"CASE WHEN ({revenue_expr}) > 0 THEN hash({user_expr}, {ts_expr}) END"
        repeated, order_keys = _repeated_hashes(con, source_sql, row_hash, keep, kept, order_key)
        order_times_unique = _repeated(order_keys).size == 0 and not repeated.size
    if repeated is not None and repeated.size:
        clean_sql, duplicates, refunds_dropped = _drop_duplicates(
            con, source_sql, typed, keep, row_hash, repeated, unmapped
        )
        negative -= refunds_dropped
    few_repeats = repeated is None or repeated.size <= MAX_REPEATS_IN_VIEW
    if "read_parquet(" in source_sql and few_repeats:
        # Parquet is cheap to re-scan: a view saves copying the log into memory.
        con.execute(f"CREATE TEMP VIEW {table} AS {clean_sql}")
    else:
        con.execute(f"CREATE TEMP TABLE {table} AS {clean_sql}")
    # Rows at or after as_of are counted before de-duplication, duplicates among the rest.
    rows_clean = kept - duplicates
    report = DataQualityReport(
        rows_read=int(rows_read),
        null_user_id=int(null_user),
        null_timestamp=int(null_ts),
        null_event=int(n_null_event),
        stray_timestamp=int(n_stray),
        duplicate_rows=int(duplicates),
        at_or_after_as_of=int(after),
        negative_revenue_rows=int(negative),
        rows_clean=int(rows_clean),
        users=int(users),
        first_event=first.isoformat() if first is not None else None,
        last_event=last.isoformat() if last is not None else None,
        duplicates_checked=check_duplicates,
    )
    # Uncounted users: rows_clean > 0 proves one, all that min_users <= 1 asks.
    check_enough_left(report, cutoff, min_users if count_users else 0)
    anonymous = []
    candidates = anonymous_id_columns(list(types), columns) if null_user else []
    if candidates:
        held = con.execute(
            "SELECT "
            + ", ".join(f"bool_and({sql_identifier(name)} IS NOT NULL)" for name in candidates)
            + f" FROM {source_sql} WHERE {sql_identifier(columns.user_id)} IS NULL"
        ).fetchone()
        anonymous = [name for name, every in zip(candidates, held, strict=True) if every]
    dropped = dropped_rows_message(report, columns, anonymous)
    if dropped is not None:
        warnings.warn(dropped, SegmentkitWarning, stacklevel=2)
    return EventLog(
        con=con,
        table=table,
        _report=report,
        has_revenue=has_revenue,
        has_session_id=has_session,
        as_of=cutoff,
        columns=columns,
        source_columns=tuple(types),
        event_names=tuple(sorted(found["event_names"] or ())),
        users_counted=count_users,
        order_times_unique=order_times_unique,
    )


def _repeated_hashes(
    con: duckdb.DuckDBPyConnection,
    source_sql: str,
    row_hash: str,
    keep: str,
    rows: int,
    side_hash: str = "NULL::UBIGINT",
) -> tuple[np.ndarray, np.ndarray]:
    """Return the row hashes that more than one of the ``rows`` kept rows has, sorted.

    Also returns the non-null values of ``side_hash`` read in the same scan (the
    order keys of :func:`load_events`: rows with revenue, a few percent of an event log).

    Two equal rows always share a hash, so an empty answer proves that the log has
    no exact duplicates; a collision between different rows only adds a hash whose
    rows are then compared exactly. The hashes are streamed into one array of 8
    bytes a row, those below 2**63 from its start and the others from its end, so
    that equal hashes share a half; each half is searched for repeats on its own
    core (:func:`_repeated`: a small table per bucket, in cache). Measured, with numpy sorting
    the halves, on the 29.2M-row log of ``benchmarks/features.py``:
    4.7 s of CPU against 6.6 s for DuckDB's ``count(DISTINCT hash)``, and 230 MB
    instead of the 0.6 GiB its hash table added to the peak; filling the halves
    while streaming saves the 0.7 s of a single-threaded partition of the array,
    and filling them in one compiled pass per batch (:func:`_split_by_top_bit`)
    rather than with numpy masks and copies saves about 0.6 s of CPU more.
    """
    hashes = np.empty(rows, dtype=np.uint64)
    low, high = 0, rows  # hashes[:low] are below 2**63, hashes[high:] are not
    query = f"SELECT {row_hash} AS h, {side_hash} AS s FROM {source_sql} WHERE {keep}"
    split = _split_kernel()
    side = []
    for batch in con.sql(query).to_arrow_reader(1 << 20):
        side.append(batch.column(1).drop_null().to_numpy())
        values = batch.column(0).to_numpy()
        if len(values) > high - low:  # pragma: no cover - the source changed between scans
            raise DataValidationError(f"events changed while being read: more than {rows} rows")
        low, high = split(values, hashes, low, high)
    if low != high:  # pragma: no cover - the source changed between two scans
        filled = rows - (high - low)
        raise DataValidationError(f"events changed while being read: {rows} then {filled} rows")
    halves = [hashes[:low], hashes[low:]] if usable_cores() > 1 else [hashes]
    side_values = np.concatenate(side) if side else np.empty(0, np.uint64)
    return np.concatenate(thread_map(_repeated, halves)), side_values.astype(np.uint64)


def _split_by_top_bit(
    values: np.ndarray, hashes: np.ndarray, low: int, high: int
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Kernel of :func:`_repeated_hashes`: copy a batch of hashes into the two halves.

    Values below 2**63 go to ``hashes[low:]``, the others to ``hashes[:high]``
    (filled downwards); returns the new ``(low, high)``.

    Examples
    --------
    >>> hashes = np.zeros(4, dtype=np.uint64)
    >>> _split_by_top_bit(np.array([1, 2**63, 3], dtype=np.uint64), hashes, 0, 4)
    (2, 3)
    >>> hashes.tolist()
    [1, 3, 0, 9223372036854775808]
    """
    top = np.uint64(1 << 63)
    for value in values:
        if value >= top:
            high -= 1
            hashes[high] = value
        else:
            hashes[low] = value
            low += 1
    return low, high


@functools.cache
def _split_kernel() -> Callable[[np.ndarray, np.ndarray, int, int], tuple[int, int]]:
    """Compile :func:`_split_by_top_bit` on first use (as :func:`_repeated_kernel`)."""
    from segmentkit.models.hgb_runtime import _kernel

    return _kernel(_split_by_top_bit)


def _repeated(values: np.ndarray) -> np.ndarray:
    """Return the values occurring more than once in unsigned 64-bit ``values``, sorted.

    The values are copied into buckets of about a thousand by their top bits (one
    counting pass, then a scatter, an eighth of the buckets at a time), then the
    values of each bucket go into a small open-addressing table that stays in cache
    (keyed by their low bits), where a value met a second time is a repeat. Measured
    on 14.6M random hashes (half of the 29.2M rows of ``benchmarks/features.py``):
    0.31 s of CPU against 0.69 s for sorting buckets of 64 in cache and about 1.1 s
    for numpy's sort, for a scratch of an eighth of ``values`` (which is left as it
    is). A bucket too large for the table (many copies of one row) is sorted instead.
    Runs without holding the GIL.

    Examples
    --------
    >>> _repeated(np.array([7, 3, 7, 1, 3, 7], dtype=np.uint64)).tolist()
    [3, 7]
    """
    values = np.ascontiguousarray(values, dtype=np.uint64)
    # About _BUCKET_VALUES values a bucket; +1 because a half of the hash range (see
    # _repeated_hashes) leaves the top bit constant.
    per_bucket = max(len(values), 1) / _BUCKET_VALUES
    bits = min(24, max(1, int(np.ceil(np.log2(max(per_bucket, 1.0)))) + 1))
    return np.sort(_repeated_kernel()(values, bits))


#: Mean values per bucket of :func:`_repeated`, and the slots of its table (a power
#: of two, at least twice the buckets it takes: larger buckets are sorted instead).
_BUCKET_VALUES = 1024
_TABLE_SLOTS = 4096


def _repeated_in_buckets(values: np.ndarray, bits: int) -> np.ndarray:  # pragma: no cover
    """Kernel of :func:`_repeated` (compiled): the repeated values, bucket by bucket.

    Buckets are the top ``bits`` bits of a value.
    """
    shift = np.uint64(64 - bits)
    starts = np.zeros((1 << bits) + 1, np.int64)
    for value in values:
        starts[np.int64(value >> shift) + 1] += 1
    for bucket in range(1 << bits):
        starts[bucket + 1] += starts[bucket]
    found = np.empty(64, values.dtype)
    n_found = 0
    # The table: a slot is in use for the current bucket when its owner is that bucket
    # (no clearing between buckets); copies counts to 2 (a repeat is recorded once).
    slots = np.empty(_TABLE_SLOTS, values.dtype)
    owner = np.full(_TABLE_SLOTS, -1, np.int64)
    copies = np.zeros(_TABLE_SLOTS, np.uint8)
    # Buckets are filled a slice of consecutive buckets at a time (one sequential read
    # of ``values`` per slice), so that the scratch holds about 1/_SLICES of the values.
    n_buckets = 1 << bits
    per_slice = max(1, -(-values.size // _SLICES))
    first = 0
    while first < n_buckets:
        last = first + 1
        while last < n_buckets and starts[last + 1] - starts[first] <= per_slice:
            last += 1
        base = starts[first]
        scratch = np.empty(starts[last] - base, values.dtype)
        ends = starts[first:last].copy() - base  # next free place of each bucket
        for value in values:
            bucket = np.int64(value >> shift)
            if first <= bucket < last:
                scratch[ends[bucket - first]] = value
                ends[bucket - first] += 1
        for bucket in range(first, last):
            members = scratch[starts[bucket] - base : starts[bucket + 1] - base]
            size = members.size
            if size < 2:
                continue
            if 2 * size > _TABLE_SLOTS:  # many copies of a few values: sort them
                members.sort()
                for i in range(1, size):
                    if members[i] == members[i - 1] and (
                        i == 1 or members[i - 1] != members[i - 2]
                    ):
                        if n_found == found.size:
                            grown = np.empty(2 * n_found, values.dtype)
                            grown[:n_found] = found
                            found = grown
                        found[n_found] = members[i]
                        n_found += 1
                continue
            mask = 8
            while mask < 2 * size:
                mask *= 2
            mask = np.uint64(mask - 1)
            for value in members:
                slot = np.int64(value & mask)
                while owner[slot] == bucket and slots[slot] != value:
                    slot = np.int64((slot + 1) & mask)
                if owner[slot] != bucket:
                    owner[slot] = bucket
                    slots[slot] = value
                    copies[slot] = 1
                elif copies[slot] == 1:
                    copies[slot] = 2
                    if n_found == found.size:
                        grown = np.empty(2 * n_found, values.dtype)
                        grown[:n_found] = found
                        found = grown
                    found[n_found] = value
                    n_found += 1
        first = last
    return found[:n_found]


@functools.cache
def _repeated_kernel() -> Callable[[np.ndarray, int], np.ndarray]:
    """Compile :func:`_repeated_in_buckets` on first use (numba is imported only then).

    Compiled as the scoring kernels are (cached on disk where writable).
    """
    from segmentkit.models.hgb_runtime import _kernel

    return _kernel(_repeated_in_buckets)


def _drop_duplicates(
    con: duckdb.DuckDBPyConnection,
    source_sql: str,
    typed: str,
    keep: str,
    row_hash: str,
    repeated: np.ndarray,
    unmapped: Sequence[str] = (),
) -> tuple[str, int, int]:
    """Return the SQL of the kept rows with exact duplicates dropped, and what was dropped.

    Only rows whose hash is in ``repeated`` can have a copy: those (usually few) rows
    are grouped exactly, once, into a small table holding each distinct row with its
    number of copies; every other row is read from the source as it is. Rows are
    compared on the contract's columns and on the ``unmapped`` source columns (quoted
    names), which the clean log then leaves out.

    Returns
    -------
    tuple
        The SQL, the number of rows dropped and how many of them were refunds.
    """
    number = next(_table_ids)
    hashes, copies = f"_sk_repeated_{number}", f"_sk_copies_{number}"
    frame = pd.DataFrame({"h": repeated})
    con.register(f"{hashes}_frame", frame)
    con.execute(f"CREATE TEMP TABLE {hashes} AS SELECT h FROM {hashes}_frame")
    con.unregister(f"{hashes}_frame")
    candidates = f"{row_hash} IN (SELECT h FROM {hashes})"
    extra = "".join(f", {column} AS _sk_extra_{i}" for i, column in enumerate(unmapped))
    con.execute(
        f"CREATE TEMP TABLE {copies} AS SELECT {typed}{extra}, count(*) AS copies "
        f"FROM {source_sql} WHERE {keep} AND {candidates} GROUP BY ALL"
    )
    dropped, refunds = con.execute(
        f"SELECT sum(copies - 1), coalesce(sum(copies - 1) FILTER (WHERE revenue < 0), 0) "
        f"FROM {copies}"
    ).fetchall()[0]
    clean_sql = (
        f"SELECT {typed} FROM {source_sql} WHERE {keep} AND NOT ({candidates}) "
        f"UNION ALL SELECT user_id, timestamp, event, revenue, session_id FROM {copies}"
    )
    return clean_sql, int(dropped), int(refunds)


def _roles_present(log: EventLog) -> dict[str, str]:
    return roles_present(log.columns, log.has_revenue, log.has_session_id)


def roles_present(columns: ColumnMap, has_revenue: bool, has_session_id: bool) -> dict[str, str]:
    """Return contract role to column name, for every role a log has (shared by every engine).

    Examples
    --------
    >>> roles_present(ColumnMap(event=None), has_revenue=True, has_session_id=False)
    {'user_id': 'user_id', 'timestamp': 'timestamp', 'revenue': 'revenue'}
    """
    present = {"user_id": columns.user_id, "timestamp": columns.timestamp}
    if columns.event is not None:
        present["event"] = columns.event
    if has_revenue and columns.revenue is not None:
        present["revenue"] = columns.revenue
        if columns.quantity is not None:
            present["quantity"] = columns.quantity
    if has_session_id and columns.session_id is not None:
        present["session_id"] = columns.session_id
    return present


def key_events_seen(log: EventLog, key_events: Sequence[str]) -> list[str]:
    """Return the configured key events that occur at least once in the clean log."""
    if not key_events:
        return []
    if log.event_names is not None:  # known from validation: no need to read the log again
        return sorted(set(map(str, key_events)) & set(log.event_names))
    names = ", ".join(sql_literal(str(name)) for name in key_events)
    rows = log.con.execute(
        f"SELECT DISTINCT event FROM {log.table} WHERE event IN ({names})"
    ).fetchall()
    return sorted(str(row[0]) for row in rows)


def key_events_notes(log: EventLog, key_events: Sequence[str]) -> list[str]:
    """Say which ``features.key_events`` a training log never holds or spells two ways.

    Key events are counted by exact name. One the log never holds has a count feature
    of 0 for every user: usually the log names it otherwise ('cart' for
    'add_to_cart'), which only the user can tell. One the log also spells otherwise
    ('add_to_cart' beside 'Add To Cart', two sources merged) is counted in part. A
    transaction table (no event column: every row a purchase) holds no other event by
    construction: nothing is said.
    """
    if log.columns.event is None:
        return []
    names = sorted(map(str, distinct_event_names(log)))
    seen = set(key_events_seen(log, key_events))
    missing = [str(name) for name in key_events if str(name) not in seen]
    notes = []
    if missing:
        notes.append(
            f"features.key_events {missing} never occur in this log, so their count features "
            f"are 0 for every user; the log's events are {quoted_names(names, 12)}"
            + did_you_mean(missing, names)
        )
    for name in sorted(seen):
        others = other_spellings(name, names)
        if others:
            notes.append(
                f"features.key_events: the log also spells {name!r} as {others}; only the rows "
                f"spelled {name!r} are counted in its feature (give the log one spelling)"
            )
    return notes


#: Events of a training log recorded with their share of its rows: those holding at
#: least this share...
RECORDED_EVENT_SHARE = 0.001
#: ...the most frequent first, at most this many.
MAX_RECORDED_EVENTS = 100
#: Share of the training log's rows held by events that a log to score never holds from
#: which it is refused (every count would shrink)...
ABSENT_EVENTS_REFUSED = 0.5
#: ...and from which scoring warns.
ABSENT_EVENTS_WARNED = 0.1


def describe_input(log: EventLog, key_events: Sequence[str] = ()) -> dict[str, Any]:
    """Describe what a training log held (recorded in the bundle, checked when scoring).

    Returns
    -------
    dict
        ``columns``: contract role to the log's column name, for every role present;
        ``optional_used``: the optional roles (``revenue``, ``session_id``) the
        features were built from; ``key_events_seen``: the key events that occurred;
        ``event_shares``: each event's share of the log's rows (see
        :func:`event_shares`). Names and shares only, never values.
    """
    present = _roles_present(log)
    return {
        "columns": present,
        "optional_used": [role for role in ("revenue", "session_id") if role in present],
        "key_events_seen": key_events_seen(log, key_events),
        "event_shares": event_shares(log),
    }


def event_shares(log: EventLog) -> dict[str, float]:
    """Each event's share of a clean log's rows, for the events scoring checks for.

    The events holding at least :data:`RECORDED_EVENT_SHARE` of the rows, the most
    frequent first, at most :data:`MAX_RECORDED_EVENTS`; none for a transaction table
    (no event column).
    """
    if log.columns.event is None:
        return {}
    rows = log.con.execute(
        f"""SELECT event, count(*) AS n, sum(count(*)) OVER () AS total
        FROM {log.table} WHERE event IS NOT NULL
        GROUP BY event ORDER BY n DESC, event LIMIT {MAX_RECORDED_EVENTS}"""
    ).fetchall()
    return {
        str(name): n / float(total) for name, n, total in rows if n / total >= RECORDED_EVENT_SHARE
    }


def check_input(log: EventLog, schema: Mapping[str, Any] | None) -> list[str]:
    """Refuse a log that lacks a column the model was trained with; report unseen key events.

    Parameters
    ----------
    log : EventLog
        The log about to be scored.
    schema : mapping, optional
        :func:`describe_input` of the training log (bundles without one are not checked).

    Returns
    -------
    list of str
        Warnings: key events seen in training that never occur in ``log``.

    Raises
    ------
    DataValidationError
        A column the model was trained with (e.g. ``revenue``) is absent: its features
        would silently become zero and move users to other segments; or the log ends
        before its ``as_of`` (see :func:`check_log_reaches_as_of`).
    """
    check_log_reaches_as_of(log)
    # Rows dropped for a missing user id, timestamp or event were already named by
    # load_events' warning (dropped_rows_message).
    return check_against_training(
        schema,
        present=_roles_present(log),
        source_columns=list(log.source_columns),
        event_column=log.columns.event,
        seen=lambda expected: key_events_seen(log, expected),
        event_names=lambda: distinct_event_names(log),
    )


def check_against_training(
    schema: Mapping[str, Any] | None,
    *,
    present: Mapping[str, str],
    source_columns: Sequence[str],
    event_column: str | None,
    seen: Callable[[Sequence[str]], Sequence[str]],
    event_names: Callable[[], Iterable[Any]],
) -> list[str]:
    """Compare a log about to be scored with the training log (shared by every engine).

    Parameters
    ----------
    schema : mapping, optional
        :func:`describe_input` of the training log (bundles without one are not checked).
    present : mapping
        Contract role to column name, for every role the log has.
    source_columns : sequence of str
        The log's own columns (named in the error).
    event_column : str, optional
        The log's event column (``None``: every row is a purchase).
    seen : callable
        Given key event names, returns those that occur in the log.
    event_names : callable
        Returns every event name of the log; only called when a key event is unseen.

    Returns
    -------
    list of str
        Warnings: key events seen in training that never occur in the log.

    Raises
    ------
    DataValidationError
        A column the model was trained with is absent, the log spells key events of
        the training log otherwise (e.g. in capitals), the model was trained on a
        transaction table (no event column) and this log holds other events than
        ``purchase``, or this log has a quantity column that training did not have.
    """
    notes: list[str] = []
    if not schema:
        return notes
    trained = dict(schema.get("columns", {}))
    missing = [f"{role} ({name!r})" for role, name in trained.items() if role not in present]
    if missing:
        raise DataValidationError(
            f"the model was trained with column(s) {', '.join(missing)} that this event log "
            f"lacks; columns present: {list(source_columns)} (map them in data.columns)"
        )
    if trained and "quantity" in present and "quantity" not in trained:
        raise DataValidationError(
            f"column {present['quantity']!r} (quantity): the model was trained on revenue as the "
            "log gave it (no quantity column); this log's revenue would be multiplied by its "
            "quantity: map data.columns.quantity to null, as in training"
        )
    if trained and "event" not in trained and event_column is not None:
        _check_purchases_only(event_column, event_names())
    expected = [str(e) for e in schema.get("key_events_seen", [])]
    unseen = sorted(set(expected) - set(seen(expected)))
    renamed = respelled_names(unseen, event_names()) if unseen and event_column else {}
    if renamed:
        pairs = ", ".join(f"{name!r} as {spelled!r}" for name, spelled in renamed.items())
        raise DataValidationError(
            f"column {event_column!r} (event): this log spells key event(s) of the "
            f"training log differently: {pairs}; the model would count none of them. Rename "
            "them as in training"
        )
    if unseen:
        notes.append(
            f"key event(s) {unseen} occurred in the training log but never in this one: "
            "their count features are zero for every user"
        )
    shares = schema.get("event_shares") or {}
    if shares and event_column is not None:
        notes += _absent_events(shares, event_column, event_names())
    return notes


def _absent_events(
    shares: Mapping[str, float], event_column: str, present: Iterable[Any]
) -> list[str]:
    """Refuse (or warn about) a log that lacks events holding much of the training log.

    An export of purchases only, scored by a model trained on every click, makes
    every user's counts of events, sessions and active days shrink: segments and
    scores confidently wrong. Events holding :data:`ABSENT_EVENTS_REFUSED` or more
    of the training log's rows and absent here are refused, from
    :data:`ABSENT_EVENTS_WARNED` warned about.

    Examples
    --------
    >>> _absent_events({"view": 0.7, "buy": 0.2}, "event", ["buy", "view"])
    []
    >>> _absent_events({"view": 0.7, "cart": 0.1, "buy": 0.2}, "event", ["buy", "view"])[0][:53]
    "event(s) ['cart'] held 10% of the training log's rows"
    """
    names = {str(name) for name in present if name is not None}
    absent = {name: float(share) for name, share in shares.items() if name not in names}
    lost = sum(absent.values())
    if lost < ABSENT_EVENTS_WARNED:
        return []
    listed = quoted_names(sorted(absent, key=lambda name: -absent[name]), 10)
    respelled = respelled_names(list(absent), names)
    spelled = (
        "; spelled otherwise here: "
        + ", ".join(f"{name!r} as {other!r}" for name, other in respelled.items())
        if respelled
        else ""
    )
    said = (
        f"event(s) [{listed}] held {lost:.0%} of the training log's rows and never occur in "
        f"this log{spelled}"
    )
    if lost >= ABSENT_EVENTS_REFUSED:
        remedy = (
            "an export of some events only? Give the log with every event, as in training"
            if names & set(shares)
            else "the log names its events otherwise? Rename them as in training"
        )
        raise DataValidationError(
            f"column {event_column!r} (event): {said}; events present: "
            f"[{quoted_names(sorted(names), 10)}]. Every user's counts of events, sessions and "
            f"active days would shrink, and segments and scores be confidently wrong: {remedy}"
        )
    return [f"{said}: counts of events, sessions and active days are lower than in training"]


def _check_purchases_only(event_column: str, names: Iterable[Any]) -> None:
    """Refuse other events in a log given to a model trained on a transaction table.

    A model trained with ``data.columns.event: null`` read every row as a purchase:
    its ``events_*`` and ``sessions_*`` features count purchases. Fed a log whose
    events include views or carts, the same features would count every event, and
    every user would look many times as active as in training (a confident wrong
    segment and score, and a refresh that reports the difference as drift).
    """
    others = sorted({str(name) for name in names} - {"purchase"})
    if not others:  # a column holding only 'purchase' reads as the training table did
        return
    shown = others[:10] + (["..."] if len(others) > 10 else [])
    raise DataValidationError(
        f"column {event_column!r} (event): the model was trained on a transaction table "
        "(data.columns.event: null, every row a purchase), but this log has other events "
        f"{shown}; its features would count them all as purchases. Give it the purchase rows "
        "only, with data.columns.event: null as in training, or train a model on this event log"
    )


def _spelling(name: str) -> str:
    """Return an event name without case, blanks or separators (``Add-To Cart``: ``addtocart``).

    Examples
    --------
    >>> _spelling(" Add-To Cart") == _spelling("add_to_cart")
    True
    """
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def distinct_event_names(log: EventLog) -> list[Any]:
    """Every distinct event name of ``log``."""
    if log.event_names is not None:
        return list(log.event_names)
    return [row[0] for row in log.con.execute(f"SELECT DISTINCT event FROM {log.table}").fetchall()]


def respelled_names(names: Sequence[str], present: Iterable[Any]) -> dict[str, str]:
    """Names of ``names`` found in ``present`` only under another spelling, e.g. in capitals.

    Examples
    --------
    >>> respelled_names(["purchase", "view"], ["PURCHASE", "click", None])
    {'purchase': 'PURCHASE'}
    """
    spelled = {_spelling(str(name)): str(name) for name in present if name is not None}
    return {name: spelled[_spelling(name)] for name in names if _spelling(name) in spelled}


def other_spellings(name: str, present: Iterable[Any]) -> list[str]:
    """Names of ``present`` that spell ``name`` otherwise (capitals, blanks, separators).

    Examples
    --------
    >>> other_spellings("purchase", ["purchase", "Purchase", "page_view", None])
    ['Purchase']
    """
    key = _spelling(name)
    return sorted(
        str(other) for other in present if other is not None and str(other) != name
        and _spelling(str(other)) == key
    )  # fmt: skip


def check_log_reaches_as_of(log: EventLog) -> None:
    """Refuse a cut-off later than the log's end by more than its own longest quiet spell.

    Features as of T describe users by what they did up to T: a log that stops days
    before T makes every user look inactive for those days (recency grows, window
    counts shrink), a confident wrong answer. The log itself says how long it can go
    without any event: whole calendar days without one between its first and last
    event. Days without events from the log's last day to ``as_of`` are accepted up
    to that many, plus one (a partial day at each end); the midnight after the last
    event (the default snapshot) is always accepted. The longest quiet spell is only
    looked for when ``as_of`` is after that midnight.

    Raises
    ------
    DataValidationError
        Naming ``as_of``, the last event, the longest quiet spell and the snapshot to use.
    """
    if log.as_of is None or log.last_event is None:
        return

    def quiet_spell() -> int:
        (quiet,) = log.con.execute(
            f"""
            SELECT coalesce(max(day - previous - 1), 0) FROM (
                SELECT day, lag(day) OVER (ORDER BY day) AS previous
                FROM (SELECT DISTINCT CAST(timestamp AS DATE) AS day FROM {log.table})
            )
            """
        ).fetchall()[0]
        return int(quiet)

    check_as_of_reaches_log_end(log.as_of, log.last_event, quiet_spell)


def check_as_of_reaches_log_end(
    as_of: dt.datetime, last_event: str, quiet_spell: Callable[[], int]
) -> None:
    """Apply the rule of :func:`check_log_reaches_as_of` (shared by every engine).

    Parameters
    ----------
    as_of : datetime.datetime
        The cut-off (naive UTC).
    last_event : str
        The log's last event before ``as_of`` (ISO 8601).
    quiet_spell : callable
        Returns the most whole calendar days the log goes without any event between
        its first and last event; only called when ``as_of`` is after the midnight
        following the last event.

    Raises
    ------
    DataValidationError
        Naming ``as_of``, the last event, the longest quiet spell and the snapshot to use.
    """
    natural = midnight_after(last_event)
    if as_of <= natural:
        return
    quiet = int(quiet_spell())
    missing_days = (as_of - natural) / dt.timedelta(days=1)
    if missing_days >= quiet + 1:
        raise DataValidationError(
            f"as_of {as_of:%Y-%m-%d %H:%M} leaves {missing_days:,.1f} day(s) without any "
            f"event after the day of the log's last event ({last_event}), but the log never "
            f"goes more than {quiet} whole day(s) without one: it ends before as_of, and "
            f"every user would look inactive since; score as of {natural:%Y-%m-%d} or earlier "
            "(the default: the midnight after the last event), or give a log that reaches as_of"
        )


def unreadable(exc: BaseException) -> DataValidationError:
    r"""Return the error for events the reader fails on: what went wrong, and where.

    DuckDB's CSV errors put the reason on the lines after "CSV Error on Line: N",
    which a one-line message would drop. Three are common in exports and get their
    own message:

    - a file that is not UTF-8 (Latin-1, as Excel and older tools write it): the
      setting that reads it;
    - a value of another type than the column's first rows, the sample DuckDB types
      the column from: the header line again (files concatenated with their
      headers), or a stray value such as ``n/a``;
    - a line with more or fewer fields than the header (an unquoted comma in a value),
      or, among the first lines, no delimiter that splits them alike.

    Examples
    --------
    >>> text = (
    ...     'Conversion Error: CSV Error on Line: 25002\n'
    ...     'Original Line: user_id,timestamp,event,revenue\n'
    ...     'Error when converting column "revenue". Could not convert string "revenue" '
    ...     "to 'DOUBLE'\n\n  file = all.csv\n")
    >>> print(unreadable(RuntimeError(text)))  # doctest: +ELLIPSIS
    events: all.csv, line 25002 repeats the header ('user_id,timestamp,event,revenue'): ...
    """
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    source = re.search(r"^\s*file = (.+)$", text, re.MULTILINE)
    where = (
        f"{source.group(1).strip() + ', ' if source else ''}line {line.group(1) if line else '?'}"
    )
    original = re.search(r"^Original Line: (.*)$", text, re.MULTILINE)
    shown = repr(original.group(1)[:200]) if original else "?"
    if "Invalid unicode" in text or "not utf-8 encoded" in text:
        return DataValidationError(
            f"events cannot be read as UTF-8 ({where}): a CSV exported as Latin-1 "
            "(ISO-8859-1, as Excel and older tools write it, e.g. '£' or 'é' in one byte)? Set "
            "data.columns.csv_encoding: latin-1 (or utf-16)"
        )
    converting = re.search(
        r'converting column "(.*?)"\. Could not convert string "(.*?)" to \'(\w+)', text
    )
    if converting:
        column, value, kind = converting.groups()
        if value == column:
            return DataValidationError(
                f"events: {where} repeats the header ({shown}): CSV files concatenated with "
                "their headers? Remove the repeated header lines, or give the files as a glob "
                "or a directory, each read with its own header"
            )
        return DataValidationError(
            f"events: {where}: column {column!r} holds {value!r}, where its first rows hold "
            f"{kind} values (a CSV column is typed from its first rows): a stray value, such "
            "as 'n/a' for a missing one? Blank it, or correct it"
        )
    malformed = re.search(
        r'Malformed JSON in file "(.*?)", at byte \d+ in [^:]*: (.*?)\.?\s*$',
        text,
        re.MULTILINE,
    )
    if malformed:
        return not_json(*malformed.groups())
    sniffed = re.search(r'Error when sniffing file "(.*?)"', text)
    if sniffed and "parsing dialect" in text:
        return DataValidationError(
            f"events: {sniffed.group(1)} cannot be split into columns: no delimiter (',', ';', "
            "'|', tab) gives its first lines one number of fields. A delimiter inside a value "
            "(a decimal comma, a comma in a product name) that is not quoted? Quote such "
            "values, or export with another delimiter"
        )
    fields = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if fields:
        expected, found = fields.groups()
        return DataValidationError(
            f"events: {where} has {found} fields where the header has {expected} ({shown}): "
            "a delimiter inside a value (a decimal comma, a comma in a product name) that is "
            "not quoted? Quote such values, or export with another delimiter"
        )
    return DataValidationError(f"events cannot be read: {_first_line(exc)}")


#: The layouts JSON event files are read in, as refusals state them.
JSON_LAYOUTS = (
    "expected one JSON object per line (JSON lines), or one JSON array of objects per file"
)


def open_event_file(path: str, mode: str = "rb", **options: Any) -> Any:
    """Open a local event file, gunzipping a ``.gz`` one (as DuckDB and Spark read it)."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    return opener(path, mode, **options)


def not_json(path: str, reason: str) -> DataValidationError:
    """Return the error for a JSON file the reader stops on, naming its first bad line.

    Shared by every engine: the line is found again here, as DuckDB's line number is
    not the line's (one more, or a record's number) and Spark gives none.
    """
    if "UTF-8" in reason:
        return DataValidationError(
            f"events: {path} is not UTF-8 ({reason}), as JSON must be: exported as Latin-1? "
            f"Re-encode it, e.g. iconv -f latin1 -t utf-8 {Path(path).name} > utf8.jsonl"
        )
    bad = first_bad_json_line(path)
    where = f", line {bad[0]} is not JSON ({bad[1][:200]!r})" if bad else f" is not JSON ({reason})"
    return DataValidationError(f"events: {path}{where}: {JSON_LAYOUTS}")


def first_bad_json_line(path: str) -> tuple[int, str] | None:
    r"""Return the number and text of a JSON lines file's first line that is not JSON.

    Read only when the reader has refused the file. None for a file of one JSON array
    (its lines are not records), or when every line parses.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
    ...     _ = f.write('{"a": 1}\n\n<html>\n{"a": 2}\n')
    >>> first_bad_json_line(f.name)
    (3, '<html>')
    """
    try:
        with open_event_file(path, "rt", encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                text = line.strip()
                if number == 1 and text.startswith("["):
                    return None
                if not text:
                    continue
                try:
                    json.loads(text)
                except ValueError:
                    return number, text
    except OSError:
        return None
    return None


def _first_line(exc: BaseException) -> str:
    """Return the first line of an error message (DuckDB appends the query and a caret)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def default_as_of(log: EventLog) -> dt.datetime:
    """Return the midnight after the last event: the natural snapshot of a complete log.

    Examples
    --------
    >>> import pandas as pd
    >>> log = load_events(pd.DataFrame({"user_id": [1], "timestamp": ["2024-05-01 13:00"],
    ...                                 "event": ["view"]}))
    >>> default_as_of(log)
    datetime.datetime(2024, 5, 2, 0, 0)
    """
    if log.last_event is None:  # pragma: no cover - load_events refuses empty logs
        raise InsufficientDataError("the event log is empty")
    day_rows = log.con.execute(
        f"SELECT CAST(timestamp AS DATE), count(*) FROM {log.table} GROUP BY ALL"
    ).fetchall()
    check_no_late_tail(dict(day_rows), log.last_event)
    return midnight_after(log.last_event)


#: Fewest days without any event that can set a log's last rows apart (see
#: :func:`check_no_late_tail`): shorter pauses are a weekend or an outage.
TAIL_GAP_DAYS = 7


def check_no_late_tail(day_rows: Mapping[dt.date, int], last_event: str) -> None:
    """Refuse to default the snapshot past a few rows that a silence sets after the log.

    The default snapshot is the midnight after the last event. When the last rows, at
    most :data:`STRAY_SHARE` of the log, come after more days without any event than
    the log ever went without one before (and at least :data:`TAIL_GAP_DAYS`), they
    are a wrong clock or a stray export, not the log's end: the snapshot would follow
    them and every user would look inactive since the log's real end. The rule of
    :func:`check_log_reaches_as_of`, for the snapshot the log itself would set.

    Raises
    ------
    DataValidationError
        Naming the rows, their days, the silence before them and the snapshot to set.

    Examples
    --------
    >>> import datetime as dt
    >>> days = {dt.date(2024, 12, 1) + dt.timedelta(days=i): 500 for i in range(31)}
    >>> check_no_late_tail({**days, dt.date(2025, 1, 20): 3}, "2025-01-20T10:00:00")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmentkit.errors.DataValidationError: events: the last 3 row(s), on '2025-01-20', come ...
    >>> check_no_late_tail(days, "2024-12-31T23:00:00")
    """
    days = sorted(day_rows)
    limit = STRAY_SHARE * sum(day_rows.values())
    gaps = [(day - previous).days - 1 for previous, day in itertools.pairwise(days)]
    # longest[k]: the longest silence among days[0..k] (the first k gaps).
    longest = list(itertools.accumulate(gaps, max, initial=0))
    tail, tail_rows = None, 0
    for i in range(len(days) - 1, 0, -1):
        tail_rows += day_rows[days[i]]
        if tail_rows > limit:
            break
        gap = gaps[i - 1]
        if gap >= TAIL_GAP_DAYS and gap > longest[i - 1]:
            tail = (i, tail_rows, gap, longest[i - 1])
    if tail is None:
        return
    i, rows, gap, quiet = tail
    end = midnight_after(days[i - 1].isoformat())
    raise DataValidationError(
        f"events: the last {rows:,} row(s), on "
        f"{quoted_names([day.isoformat() for day in days[i:]], 5)}, come {gap} day(s) without "
        f"any event after the rest of the log ({days[0]} to {days[i - 1]}), which never went "
        f"more than {quiet} day(s) without one: a wrong clock or a stray export? The "
        f"snapshot would default to {midnight_after(last_event).date()}, the midnight after "
        "them, and every user would look inactive since. Set data.as_of (--as-of) to the "
        f"log's real end, e.g. {end.date()}: rows at or after it are excluded and counted"
    )


def midnight_after(last_event: str) -> dt.datetime:
    """Return the midnight after an event time (ISO 8601): a complete log's natural snapshot.

    Examples
    --------
    >>> midnight_after("2024-05-01T13:00:00")
    datetime.datetime(2024, 5, 2, 0, 0)
    """
    last = dt.datetime.fromisoformat(last_event)
    return dt.datetime.combine(last.date() + dt.timedelta(days=1), dt.time())


def check_output_path(out: str | Path) -> Path:
    """Return ``out`` as a Path if it names a .parquet or .csv file, else raise."""
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise DataValidationError(f"output {out}: expected a .parquet or .csv file name")
    return out


def check_output_target(out: str | Path, events: EventSource | None = None) -> Path:
    """Refuse, before any work, an output file that cannot be written or would replace the log.

    Parameters
    ----------
    out : str or Path
        The output file (``.parquet`` or ``.csv``).
    events : event source, optional
        The input: a path or glob naming the same file as ``out`` is refused (writing
        the output would destroy the event log it was computed from).

    Raises
    ------
    DataValidationError
        ``out`` has another suffix, is a directory, is one of the input files, or its
        directory cannot be created or written.
    """
    out = check_output_path(out)
    if out.is_dir():
        raise DataValidationError(f"output {out}: is a directory; expected a file name")
    if isinstance(events, str | Path):
        for path in _paths_of(str(events)):
            if Path(path).exists() and Path(path).resolve() == out.resolve():
                raise DataValidationError(
                    f"output {out} is the events file {path}: writing the output would replace "
                    "the event log; choose another output path"
                )
            if Path(path).is_dir() and Path(path).resolve() in out.resolve().parents:
                raise DataValidationError(
                    f"output {out} is inside the events directory {path}: the next run would "
                    "read the output as events; write it outside that directory"
                )
        if _glob_would_read(str(events), out):
            raise DataValidationError(
                f"output {out} matches the events glob {events}: the next run would read the "
                "output as events; write it outside what the glob matches"
            )
    check_output_parent(out)
    return out


def _glob_would_read(pattern: str, out: Path) -> bool:
    """Whether a glob of event files would match ``out`` once it is written.

    Compared component by component, as DuckDB expands the glob (``*`` stays within
    one directory, ``**`` spans any depth), on absolute, normalized paths.

    Examples
    --------
    >>> _glob_would_read("data/*.parquet", Path("data/../data/scores.parquet"))
    True
    >>> _glob_would_read("data/*.parquet", Path("data/sub/scores.parquet"))
    False
    >>> _glob_would_read("data/**/*.parquet", Path("data/sub/deeper/scores.parquet"))
    True
    """
    if not glob.has_magic(pattern):
        return False
    absolute = os.path.normpath(os.path.abspath(pattern))
    target = os.path.normpath(out.absolute())
    if "**" in absolute:  # any depth, none included: wildcards may then cross directories
        return any(fnmatch.fnmatch(target, p) for p in (absolute, absolute.replace("**/", "")))
    return PurePath(target).match(absolute)


def check_output_parent(out: Path) -> None:
    """Refuse an output whose nearest existing directory above it is a file or not writable."""
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DataValidationError(f"output {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataValidationError(f"output {out}: directory {parent} is not writable")


def write_table(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write ``frame`` to Parquet or CSV (by suffix), atomically.

    The file appears complete or not at all: it is written beside its final name
    and renamed.
    """
    out = check_output_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if out.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        tmp.replace(out)
    except BaseException:
        # A failed write leaves nothing behind (e.g. a full disk, or `out` a directory).
        tmp.unlink(missing_ok=True)
        raise
    return out
