"""Event logs on Apache Spark: the data contract of :mod:`segmentkit.io.events`, distributed.

:func:`load_events_spark` applies the same rules with the same messages as
:func:`segmentkit.io.events.load_events` and counts what it removes in the same
:class:`~segmentkit.io.events.DataQualityReport`. Time becomes integer
microseconds since the epoch (UTC) as soon as a row is typed, so results never
depend on the session time zone or on whether a Parquet file holds instants or
naive (UTC) timestamps. Nanosecond Parquet timestamps, which Spark refuses to read
as timestamps, are read as integers and truncated to microseconds, like DuckDB's
cast.

pyspark is an optional dependency (``pip install 'segmentkit[spark]'``); this
module is imported only on request, never by ``import segmentkit``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fnmatch
import functools
import glob
import itertools
import json
import re
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq

from segmentkit.config import CSV_ENCODINGS, UNIX_TIME_UNITS, ColumnMap, check_csv_header
from segmentkit.errors import DataValidationError, SegmentkitWarning
from segmentkit.io.events import (
    FILE_NAMES,
    JSON_LAYOUTS,
    JSON_SAMPLE,
    MAX_REVENUE,
    MICROS_PER_DAY,
    NUMERIC_TIMESTAMP_HINT,
    DataQualityReport,
    EventLog,
    StrayRows,
    aligned_names,
    aligned_width_error,
    anonymous_id_columns,
    check_against_training,
    check_as_of_reaches_log_end,
    check_enough_left,
    check_headerless_csv,
    check_invalid_values,
    check_mapped_columns,
    check_no_future_events,
    check_no_late_tail,
    check_output_parent,
    check_quantity_has_price,
    check_revenue_by_event,
    check_revenue_selection,
    check_stray_rows,
    check_timestamp_pattern,
    connect,
    could_hold_strays,
    csv_source,
    dropped_rows_message,
    epoch_us,
    event_files,
    file_kind,
    find_stray_rows,
    first_bad_json_line,
    flat_fields,
    holds_json_objects,
    json_source,
    json_source_sql,
    mapped_names,
    midnight_after,
    not_json,
    object_keys,
    open_event_file,
    roles_present,
    text_candidates,
    timestamp_sql,
    to_timestamp,
    unmapped_columns,
    unreadable,
)
from segmentkit.text import sql_identifier, sql_literal

try:
    from py4j.protocol import Py4JError
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Spark engine needs pyspark: pip install 'segmentkit[spark]'") from exc

__all__ = [
    "MICROS_PER_DAY",
    "SparkEventLog",
    "SparkEventSource",
    "check_spark_input",
    "check_spark_output_target",
    "default_as_of_spark",
    "derived_frame",
    "epoch_us",
    "load_events_spark",
    "parquet_user_sample",
    "partition_events",
    "partition_tables",
    "range_index",
    "read_events_spark",
    "release_checkpoint",
    "release_shuffle",
    "session_conf",
    "user_bounds",
    "utc_session",
]

_SAMPLE_ROWS = 5
_INTEGER_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_NUMERIC_TYPES = (*_INTEGER_TYPES, T.FloatType, T.DoubleType, T.DecimalType)
_NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"
_INFER_NTZ = "spark.sql.parquet.inferTimestampNTZ.enabled"
_observation_ids = itertools.count()
_ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
_ARROW_BATCH_BYTES = "spark.sql.execution.arrow.maxBytesPerBatch"
#: The "no byte limit" value of _ARROW_BATCH_BYTES: Spark then skips measuring the batch
#: after every row it adds (a sixth of the JVM's time handing events to Python).
_NO_BYTE_LIMIT = str(2**31 - 1)
#: Events per Arrow batch sent to a worker, and per packed stream.
_PACK_ROWS = 100_000
_PACKED_SCHEMA = pa.schema(
    [("rows", pa.int64()), ("users", pa.int64()), ("negative", pa.int64()), ("events", pa.binary())]
)
_PACKED_SPARK_SCHEMA = "rows long, users long, negative long, events binary"

SparkEventSource = str | Path | list | DataFrame
#: A function of one partition's clean events (run in a Python worker) whose table a
#: log loaded with ``derive`` keeps instead of the events.
Derive = Callable[[EventLog], pa.Table]
#: What ``load_events_spark(derive=...)`` takes: given the Spark type of the clean user
#: ids, the function to run on each partition and the schema of its tables.
DeriveFactory = Callable[[T.DataType], tuple[Derive, T.StructType]]


#: Most rows of the log in one partition, so in one Python worker's DuckDB (roughly:
#: users are not split, and the hash spreads them unevenly).
ROWS_PER_PARTITION = 2_000_000
#: Memory the DuckDB of one Python worker may use before spilling to disk.
WORKER_MEMORY = "1GB"


@dataclass(frozen=True)
class SparkEventLog:
    """A validated event log on Spark, shuffled once by user and kept packed.

    Attributes
    ----------
    packed : pyspark.sql.DataFrame
        The clean events (exact duplicates dropped) after the one shuffle by user,
        kept on the executors (a local checkpoint): each partition holds every event
        of its users, as compressed Arrow IPC streams in the binary column ``events``
        (read them with :func:`partition_events`; other columns carry per-partition
        counts). Kept this way, a pass over the log costs the JVM almost nothing.
    schema : pyspark.sql.types.StructType
        Columns of :attr:`frame`.
    report : DataQualityReport
        What validation found and removed (aggregates only).
    has_revenue, has_session_id : bool
        Whether the source had these optional columns.
    as_of : datetime.datetime or None
        Cut-off applied while loading (events at or after it were excluded).
    partition_users : tuple of int
        Users in each partition of :attr:`packed`, in partition order, when the log
        was loaded with ``user_ranges=True`` (empty otherwise: users spread by hash).
    user_bounds : tuple
        Then the user ids that split the partitions: partition ``i`` holds the users above
        ``user_bounds[i - 1]`` and at or below ``user_bounds[i]``, so the partitions
        hold consecutive ranges of ids, in order, and a user's place among all users
        in id order is the users of the partitions before its own plus its place in
        its partition (what scoring needs to cut local scoring's chunks).
    derived : pyspark.sql.types.StructType or None
        When loaded with ``derive``: the schema of the tables :attr:`packed` holds
        instead of the events (read them with :func:`derived_frame` or
        :func:`partition_tables`); ``None`` when it holds the events.
    columns : ColumnMap or None
        The mapping the log was read with.
    source_columns : tuple of str
        The source's own columns.
    key_event_rows : dict of str to int
        Clean rows of each of the ``key_events`` asked for when loading (counted in
        the one scan; empty when none were asked for).
    event_names : tuple of str or None
        Every event name of the clean rows, collected in the one scan (as the local
        engine's :attr:`segmentkit.io.events.EventLog.event_names`); ``None`` when not
        known.
    clean_rows : pyspark.sql.DataFrame or None
        A lazy frame of the clean rows' ``ts_us`` and ``event`` (exact duplicates
        included): reading it reads the source again, so it is read only to settle
        what the kept log cannot (see :func:`check_spark_input`); run it inside
        :func:`utc_session`.
    """

    packed: DataFrame
    schema: T.StructType
    report: DataQualityReport
    has_revenue: bool
    has_session_id: bool
    as_of: dt.datetime | None
    partition_users: tuple[int, ...] = ()
    user_bounds: tuple = ()
    derived: T.StructType | None = None
    columns: ColumnMap | None = None
    source_columns: tuple[str, ...] = ()
    key_event_rows: Mapping[str, int] = dataclasses.field(default_factory=dict)
    clean_rows: DataFrame | None = None
    event_names: tuple[str, ...] | None = None

    @property
    def frame(self) -> DataFrame:
        """The clean events as rows.

        Columns ``user_id`` (string or bigint), ``ts_us`` (bigint, microseconds since
        1970-01-01 UTC), ``event`` (string), ``revenue`` (double) and ``session_id``
        (null when the log lacks them).
        """
        from pyspark.sql.pandas.types import to_arrow_schema

        _require_events(self)
        arrow_schema = to_arrow_schema(self.schema)
        has_revenue, has_session_id = self.has_revenue, self.has_session_id

        def unpack(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            log = partition_events(batches, has_revenue, has_session_id)
            if log is not None:
                rows = log.con.sql(
                    "SELECT user_id, epoch_us(timestamp) AS ts_us, event, revenue, session_id "
                    f"FROM {log.table}"
                ).to_arrow_table()
                yield from rows.cast(arrow_schema).to_batches()

        return self.packed.mapInArrow(unpack, self.schema)

    def release(self) -> None:
        """Free the kept events now (otherwise when ``packed`` is garbage collected).

        Frames computed from the log must not be read afterwards unless they were
        computed and kept (persisted) before.
        """
        release_checkpoint(self.packed)


def partition_events(
    batches: Iterable[pa.RecordBatch], has_revenue: bool, has_session_id: bool
) -> EventLog | None:
    """Load one partition of ``SparkEventLog.packed`` into a local :class:`EventLog`.

    Runs in a Python worker: DuckDB (one thread, :data:`WORKER_MEMORY`) reads the
    partition's Arrow tables in place, in the local engine's columns and types, so
    the local feature engine computes on them exactly as on a log from
    :func:`segmentkit.io.events.load_events`. Its report counts the partition's
    rows, users, refunds and first and last events (the rest is counted over the
    whole log by :func:`load_events_spark`). ``None`` for an empty partition.
    """
    table = partition_tables(batches)
    return None if table is None else local_event_log(table, has_revenue, has_session_id)


def partition_tables(batches: Iterable[pa.RecordBatch]) -> pa.Table | None:
    """Return the table packed in one partition of ``SparkEventLog.packed`` (or ``None``).

    The events, or what ``derive`` made of them when the log was loaded with it.
    """
    tables = []
    for batch in batches:
        for blob in batch.column("events"):
            if blob.is_valid:
                tables.append(pa.ipc.open_stream(blob.as_buffer()).read_all())
    return pa.concat_tables(tables) if tables else None


def local_event_log(events: pa.Table, has_revenue: bool, has_session_id: bool) -> EventLog:
    """Return a local :class:`EventLog` over clean events (the local engine's columns).

    DuckDB (one thread, :data:`WORKER_MEMORY`) reads the Arrow table in place; see
    :func:`partition_events` for what its report counts.
    """
    con = connect(threads=1, memory_limit=WORKER_MEMORY)
    con.register("events", events)
    return _summarised_log(con, "events", has_revenue, has_session_id)


def _summarised_log(
    con: duckdb.DuckDBPyConnection, table: str, has_revenue: bool, has_session_id: bool
) -> EventLog:
    """Return the :class:`EventLog` of clean events in ``con``'s ``table``, counted in one scan."""
    count, users, negative, first, last, names = con.execute(
        "SELECT count(*), count(DISTINCT user_id), count(*) FILTER (WHERE revenue < 0), "
        f"min(timestamp), max(timestamp), list(DISTINCT event) FROM {table}"
    ).fetchall()[0]
    report = DataQualityReport(
        rows_read=count,
        null_user_id=0,
        null_timestamp=0,
        duplicate_rows=0,
        at_or_after_as_of=0,
        negative_revenue_rows=negative,
        rows_clean=count,
        users=users,
        first_event=first.isoformat() if first is not None else None,
        last_event=last.isoformat() if last is not None else None,
    )
    return EventLog(
        con=con,
        table=table,
        _report=report,
        has_revenue=has_revenue,
        has_session_id=has_session_id,
        as_of=None,
        event_names=tuple(sorted(names)),
    )


def derived_frame(log: SparkEventLog) -> DataFrame:
    """Return the rows of the tables a log loaded with ``derive`` keeps (``log.derived``)."""
    if log.derived is None:
        raise TypeError("derived_frame: this log keeps its events (read them as log.frame)")

    def unpack(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = partition_tables(batches)
        if table is not None:
            yield from table.to_batches()

    return log.packed.mapInArrow(unpack, log.derived)


def _require_events(log: SparkEventLog) -> None:
    if log.derived is not None:
        raise TypeError(
            "this log was loaded with derive: it keeps the derived tables, not the events"
        )


def _number(column: str, data_type: T.DataType, role: str, decimal_comma: bool = False) -> Column:
    """Read a numeric column as double (null where its text is no number), as locally."""
    if isinstance(data_type, _NUMERIC_TYPES):
        return F.col(f"`{column}`").cast("double")
    if isinstance(data_type, T.StringType):
        text = F.col(f"`{column}`")
        if decimal_comma:  # as segmentkit.io.events.decimal_text_sql
            comma = text.rlike(r"^\s*-?\d*,\d+\s*$")
            text = F.when(comma, F.regexp_replace(text, ",", ".")).otherwise(text)
        return text.try_cast("double")
    raise DataValidationError(
        f"column {column!r} ({role}): expected numbers, got type {data_type.simpleString().upper()}"
    )


def _unmapped_hash(
    names: Sequence[str], columns: ColumnMap, fields: Mapping[str, T.StructField] | None = None
) -> Column | None:
    """Hash of a row's source columns outside the contract (None when there are none).

    An exact duplicate is equal in every column of the source, as
    :func:`segmentkit.io.events.load_events` decides: two lines of one order (same
    user, time and amount, other products) are two rows. The hash stands for those
    columns in the de-duplication after the shuffle (8 bytes a row instead of every
    column); with each column's null flag hashed too, rows that differ only in which
    column is null do not meet, and a collision of two different rows of one user,
    time, event, amount and session has a probability of about 2^-64. Spark hashes no
    map (a ``properties`` map of a table Spark wrote): a column holding one is hashed
    as its JSON text.
    """
    fields = fields or {}
    unmapped = [
        F.to_json(F.col(f"`{name}`"))
        if name in fields and _holds_map(fields[name].dataType)
        else F.col(f"`{name}`")
        for name in unmapped_columns(names, columns)
    ]
    if not unmapped:
        return None
    return F.xxhash64(*unmapped, *[column.isNull() for column in unmapped])


def _holds_map(kind: T.DataType) -> bool:
    """Whether a type is, or holds, a map."""
    if isinstance(kind, T.MapType):
        return True
    if isinstance(kind, T.ArrayType):
        return _holds_map(kind.elementType)
    if isinstance(kind, T.StructType):
        return any(_holds_map(field.dataType) for field in kind.fields)
    return False


def _pack_partition(
    batches: Iterator[pa.RecordBatch],
    derive: Derive | None = None,
    has_revenue: bool = False,
    has_session_id: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Drop a partition's exact duplicates, count it, and pack it into Arrow IPC streams.

    Runs in a Python worker on one partition of the shuffle by user; yields one row of
    counts (clean rows, users, refunds) then one row per :data:`_PACK_ROWS` rows of
    the packed table: the clean events (lz4), or ``derive`` of their
    :func:`local_event_log` (uncompressed: a derived table is read soon, and once).
    """
    batches = [batch for batch in batches if batch.num_rows]
    if not batches:
        return
    con = connect(threads=1, memory_limit=WORKER_MEMORY)
    con.register("_sk_rows", pa.Table.from_batches(batches))
    del batches
    distinct = (
        "SELECT DISTINCT user_id, make_timestamp(ts_us) AS timestamp, event, revenue, "
        "session_id FROM _sk_rows"
    )
    if "_sk_extra" in con.sql("SELECT * FROM _sk_rows LIMIT 0").columns:
        # Rows equal in the log's columns but not in the source's others are kept.
        distinct = (
            "SELECT user_id, timestamp, event, revenue, session_id FROM ("
            f"{distinct.replace(' FROM _sk_rows', ', _sk_extra FROM _sk_rows')})"
        )
    if derive is None:
        clean = con.sql(distinct).to_arrow_table()
        con.close()
        rows = clean.num_rows
        refunds = pa.compute.sum(pa.compute.less(clean.column("revenue"), 0)).as_py() or 0
        users = pa.compute.count_distinct(clean.column("user_id")).as_py()
        kept, options = clean, pa.ipc.IpcWriteOptions(compression="lz4")
    else:
        # The clean events stay in DuckDB (its own table scans faster than Arrow's),
        # counted by the log's one summary scan.
        try:
            con.execute(f"CREATE TEMP TABLE events AS {distinct}")
            con.unregister("_sk_rows")
            log = _summarised_log(con, "events", has_revenue, has_session_id)
            report = log.report
            rows, users, refunds = report.rows_clean, report.users, report.negative_revenue_rows
            kept = derive(log)
        finally:
            con.close()
        options = pa.ipc.IpcWriteOptions()
    yield pa.RecordBatch.from_pydict(
        {"rows": [rows], "users": [users], "negative": [refunds], "events": [None]},
        schema=_PACKED_SCHEMA,
    )
    for chunk in kept.to_batches(max_chunksize=_PACK_ROWS):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, chunk.schema, options=options) as writer:
            writer.write_batch(chunk)
        stream = sink.getvalue()
        offsets = pa.array([0, stream.size], type=pa.int32()).buffers()[1]
        none = pa.nulls(1, pa.int64())
        yield pa.RecordBatch.from_arrays(
            [none, none, none, pa.Array.from_buffers(pa.binary(), 1, [None, offsets, stream])],
            schema=_PACKED_SCHEMA,
        )


@contextlib.contextmanager
def utc_session(spark: SparkSession) -> Iterator[None]:
    """Analyse DataFrames with the session time zone set to UTC, then restore it.

    Spark fixes an expression's time zone when the DataFrame is analysed (eagerly, at
    creation), so plans built inside this block parse naive date strings as UTC, as
    the data contract says, whatever the session's own setting.
    """
    with session_conf(spark, "spark.sql.session.timeZone", "UTC"):
        yield


@contextlib.contextmanager
def session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """Set a session setting for the plans built and run inside this block, then restore it."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


#: DuckDB's names of the integer types its CSV reader infers (the rest of its numbers
#: are DOUBLE or DECIMAL).
_DUCKDB_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"}


def _typed_as_duckdb(
    frame: DataFrame, paths: list[str], columns: ColumnMap, kind: str = "csv"
) -> DataFrame:
    """Give a CSV's (or JSON's) columns of numbers the types the local engine reads them with.

    Spark reads every CSV column as text (its own inference would drop the leading
    zeros of ids such as CDNOW's ``00001``, which DuckDB keeps as text). The local
    engine reads the same files with DuckDB, whose CSV sniffer types a column of
    numbers as integers or doubles: customer ids such as UCI's ``12346.0`` are then
    whole numbers (read as integers) and scores keep them as integers. So DuckDB
    sniffs the files here, as :func:`segmentkit.io.events.load_events` reads them
    (:func:`segmentkit.io.events.csv_source`: ids that look like decimals stay text),
    and the columns it reads as numbers are cast alike (a value that is no number
    becomes null, as an unparseable value). JSON files are read with every value as
    text (:func:`_read_json`) and typed by DuckDB's reading of them in the same way.
    """
    con = connect(threads=1)
    source = json_source(con, paths, columns) if kind == "json" else csv_source(con, paths, columns)
    try:
        types = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as exc:  # the local engine would refuse it too
        refusal = unreadable(exc)
        if kind == "json" or "csv_encoding" in str(refusal):
            # Spark would read the bytes as U+FFFD without a word: refused as locally.
            raise refusal from None
        return frame  # Spark reads it as text
    casts = {}
    for name, type_name, *_ in types:
        base = str(type_name).split("(")[0]
        if name not in frame.columns:
            continue
        if base in _DUCKDB_INTEGERS or (base.startswith("U") and base[1:] in _DUCKDB_INTEGERS):
            casts[name] = "bigint"
        elif base in ("DOUBLE", "FLOAT", "DECIMAL"):
            casts[name] = "double"
    # In DuckDB's order of the columns: Spark orders a JSON file's keys by name.
    order = [name for name, *_ in types if name in frame.columns]
    order += [name for name in frame.columns if name not in order]
    return frame.select(
        *[
            F.col(f"`{name}`").try_cast(casts[name]).alias(name) if name in casts else f"`{name}`"
            for name in order
        ]
    )


def _from_epoch_us(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(micros))


def _is_nanos_error(exc: Exception) -> bool:
    text = str(exc)
    return "PARQUET_TYPE_ILLEGAL" in text and "NANOS" in text


def read_events_spark(
    spark: SparkSession, source: str | Path | Sequence[str], columns: ColumnMap | None = None
) -> DataFrame:
    """Read Parquet or CSV paths, globs or URIs (anything Spark reads) into a DataFrame.

    Local paths, globs and directories are resolved into files by the local engine's
    rules (:func:`segmentkit.io.events.event_files`: a directory stands for its Parquet
    or CSV files at any depth, partition directories giving their columns; ``.csv.gz``
    is CSV), with the same messages; other URIs are passed to Spark as they are. Naive
    Parquet timestamps are read as TIMESTAMP at their stored microseconds (naive times
    are UTC), whatever the session's time zone. Parquet files with nanosecond
    timestamps are read with those columns as integers (nanoseconds), which
    :func:`load_events_spark` converts. CSV files are read with ``columns``' header
    names (``data.columns.csv_header``) and typed as locally (:func:`_typed_as_duckdb`).
    """
    columns = columns or ColumnMap()
    csv_header = columns.csv_header
    items = [str(source)] if isinstance(source, str | Path) else [str(s) for s in source]
    paths: list[str] = []
    kinds: set[str | None] = set()
    base_paths: list[str] = []
    for item in items:
        if "://" in item and not item.startswith("file://"):
            paths.append(item)
            # A remote name without a suffix is a directory of Parquet files, as Spark writes.
            kinds.add(file_kind(item.rstrip("/")) or ("parquet" if not Path(item).suffix else None))
            continue
        local = item.removeprefix("file://")
        kind, files = event_files(local)  # the local engine's rules and messages
        kinds.add(kind)
        # The JVM resolves relative paths against its own working directory.
        paths += [str(Path(path).resolve()) for path in files]
        if Path(local).is_dir():
            base_paths.append(str(Path(local).resolve()))
    if kinds - {"parquet", "csv", "json"} or len(kinds) > 1:
        raise DataValidationError(
            f"events {items}: expected {FILE_NAMES}, of one kind; got "
            f"{sorted({Path(p.rstrip('/')).suffix.lower() for p in paths})}"
        )
    reader = spark.read
    if len(items) == 1 and len(base_paths) == 1:
        # Partition directories (date=2024-01-01/) give their columns, as DuckDB reads them.
        reader = reader.option("basePath", base_paths[0])
    if kinds == {"csv"}:
        local_files = [path for path in paths if "://" not in path]
        aligned = (
            aligned_names(connect(threads=1), local_files[0], columns) if local_files else None
        )
        if aligned is not None:
            return _read_aligned(reader, paths, aligned, columns)
        if csv_header is not None and local_files:
            check_headerless_csv(
                connect(threads=1), local_files[0], csv_header, columns.csv_encoding
            )
        dialect = _csv_dialect(local_files[0], columns.csv_encoding) if local_files else {}
        if columns.csv_encoding is not None:
            dialect["encoding"] = CSV_ENCODINGS[columns.csv_encoding]
        frame = reader.csv(paths, header=csv_header is None, inferSchema=False, **dialect)
        if csv_header is not None:
            frame = _named_fields(frame, csv_header, paths[0])
        if len(local_files) < len(paths):
            return _with_object_keys(frame, columns)
        return _with_object_keys(_typed_as_duckdb(frame, local_files, columns), columns)
    if kinds == {"json"}:
        frame = _read_json(reader, paths)
        local_files = [path for path in paths if "://" not in path]
        if len(local_files) < len(paths):
            return frame
        return _typed_as_duckdb(frame, local_files, columns, "json")
    try:
        # Naive Parquet timestamps are read as instants at their stored microseconds (UTC,
        # as the contract takes them), not as TIMESTAMP_NTZ: the microseconds are then
        # read as they are, with no time-zone conversion per row.
        with session_conf(spark, _INFER_NTZ, "false"):
            return _with_object_keys(_nested_as_dotted(reader.parquet(*paths)), columns)
    except Exception as exc:
        if not _is_nanos_error(exc):
            raise DataValidationError(f"events cannot be read: {exc}") from None
    # The setting is read when the scan runs, so it stays on for this session.
    spark.conf.set(_NANOS_AS_LONG, "true")
    return _with_object_keys(_mark_nanos(_nested_as_dotted(reader.parquet(*paths))), columns)


def _read_aligned(
    reader: Any, paths: list[str], names: Sequence[str], columns: ColumnMap
) -> DataFrame:
    """Read files of columns aligned by spaces as the local engine does, fields as text.

    See :func:`segmentkit.io.events.aligned_names`: lines split on runs of spaces or
    tabs, blank lines and (without ``csv_header``) each file's first line skipped.

    Raises
    ------
    DataValidationError
        A line has another number of fields than the names, as locally.
    """
    if columns.csv_encoding is not None:
        raise DataValidationError(
            f"events {paths}: Spark reads files of columns aligned by spaces as UTF-8 only, "
            f"not {columns.csv_encoding}; convert them, or read them with the local engine"
        )
    lines = reader.text(paths)
    value = F.regexp_replace(F.col("value"), r"^\s+|\s+$", "")
    fields = F.split(value, r"\s+")
    rows = lines.where(value != "").withColumn("_sk_fields", fields)
    if columns.csv_header is None:
        # Each file's first line names the columns: the lines that spell them are dropped.
        rows = rows.where(F.concat_ws(" ", "_sk_fields") != " ".join(names))
    bad = rows.where(F.size("_sk_fields") != len(names))
    found = bad.agg(F.count("*"), F.min(F.concat_ws(" ", "_sk_fields"))).first()
    if found[0]:
        raise aligned_width_error(paths, names, found[0], found[1])
    partitions = [name for name in lines.columns if name != "value"]
    return rows.select(
        *[F.col("_sk_fields")[i].alias(name) for i, name in enumerate(names)],
        *[F.col(f"`{name}`") for name in partitions],
    )


#: The column Spark's JSON reader puts a line it cannot parse in.
_CORRUPT_JSON = "_sk_corrupt_record"


def _read_json(reader: Any, paths: list[str]) -> DataFrame:
    """Read JSON files as the local engine does, every value as text, objects flattened.

    Lines (JSON lines) or, for files that start with ``[``, one array of objects per
    file (Spark's ``multiLine``; the two are not mixed). Every value is read as text
    (``primitivesAsString``), so that ids keep their digits and DuckDB's reading types
    the numbers (:func:`_typed_as_duckdb`); nested objects become dotted columns
    (``properties.time``), as :func:`segmentkit.io.events.json_source` names them. A
    line that is not JSON is refused: Spark's default would read it as a row of nulls.
    """
    arrays = {_json_array(path) for path in paths if "://" not in path}
    if len(arrays) > 1:
        raise DataValidationError(
            f"events {paths}: JSON arrays and JSON lines mixed; give files of one layout"
        )
    frame = reader.json(
        paths,
        primitivesAsString=True,
        multiLine=arrays == {True},
        mode="PERMISSIVE",
        columnNameOfCorruptRecord=_CORRUPT_JSON,
    )
    if _CORRUPT_JSON in frame.columns:  # the schema's inference read a line it could not parse
        _refuse_corrupt_json(reader, paths)
        frame = frame.drop(_CORRUPT_JSON)
    return _nested_as_dotted(frame)


def _refuse_corrupt_json(reader: Any, paths: list[str]) -> None:
    """Refuse JSON files Spark read a corrupt record in, naming it as locally.

    Local files are diagnosed as the local engine does (their first line that is not
    JSON, or DuckDB's reason, e.g. bytes that are not UTF-8, which Spark would read
    as U+FFFD); other files by the first line whose text is not JSON.
    """
    local = [path for path in paths if "://" not in path]
    for path in local:
        if first_bad_json_line(path):
            raise not_json(path, "")
    if local:
        try:
            connect(threads=1).execute(f"DESCRIBE SELECT * FROM {json_source_sql(local)}")
        except duckdb.Error as exc:
            raise unreadable(exc) from None
    text = F.trim(F.col("value"))
    bad = (
        reader.text(paths)
        .where((text != "") & F.get_json_object(F.col("value"), "$").isNull())
        .first()
    )
    if bad is not None:
        raise DataValidationError(
            f"events {paths}: a record is not JSON ({str(bad['value'])[:200]!r}): {JSON_LAYOUTS}"
        )


def _with_object_keys(frame: DataFrame, columns: ColumnMap) -> DataFrame:
    """Add the object keys ``columns`` names as columns, as locally.

    See :func:`segmentkit.io.events.object_keys_sql`: keys of maps, and of text
    columns whose first non-null values hold a JSON object.
    """
    if not any("." in name for name in mapped_names(columns)):
        return frame
    kinds: dict[str, str | None] = {
        field.name: "map" if isinstance(field.dataType, T.MapType) else None
        for field in frame.schema.fields
    }
    texts = [f.name for f in frame.schema.fields if isinstance(f.dataType, T.StringType)]
    for column in text_candidates(columns, texts):
        quoted = F.col(f"`{column}`")
        values = frame.select(quoted).where(quoted.isNotNull()).limit(JSON_SAMPLE).collect()
        kinds[column] = "json" if holds_json_objects(row[0] for row in values) else None
    for name, column, key, kind in object_keys(columns, kinds):
        quoted = F.col(f"`{column}`")
        value = quoted.getItem(key) if kind == "map" else F.get_json_object(quoted, f"$['{key}']")
        frame = frame.withColumn(name, value)
    return frame


def _nested_as_dotted(frame: DataFrame) -> DataFrame:
    """Read nested structs (JSON objects, Parquet structs) as dotted columns, as locally."""
    if not any(isinstance(field.dataType, T.StructType) for field in frame.schema.fields):
        return frame
    return frame.select(
        *[
            _field(path).alias(".".join(path))
            for field in frame.schema.fields
            for path in flat_fields(field.name, _spark_fields, field.dataType)
        ]
    )


def _field(path: tuple[str, ...]) -> Column:
    """Return the nested field at ``path`` (names taken as they are: dots, ``$``...)."""
    column = F.col(f"`{path[0]}`")
    for name in path[1:]:
        column = column.getField(name)
    return column


def _spark_fields(kind: T.DataType) -> list[tuple[str, T.DataType]] | None:
    if isinstance(kind, T.StructType):
        return [(field.name, field.dataType) for field in kind.fields]
    return None


def _json_array(path: str) -> bool:
    """Whether a JSON file starts with ``[`` (one array of objects), not with lines."""
    with open_event_file(path) as handle:
        start = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return start[:1] == b"["


def _csv_dialect(path: str, encoding: str | None = None) -> dict[str, str]:
    """Spark's CSV options for the delimiter, quote and escape DuckDB's sniffer finds.

    The local engine reads CSV files with DuckDB, which detects the delimiter; Spark
    reads commas unless told. A ``;``- or tab-separated export (Excel's, in many
    locales) would be one column on Spark and a log locally. Quotes are escaped by
    doubling them, as RFC 4180 and DuckDB read them, unless the file shows otherwise
    (Spark's default escape is a backslash).
    """
    encoded = f", encoding = {sql_literal(encoding)}" if encoding else ""
    try:
        sep, quote, escape = (
            connect(threads=1)
            .execute(f"SELECT Delimiter, Quote, Escape FROM sniff_csv(?{encoded})", [path])
            .fetchone()
        )
    except duckdb.Error:  # the local engine would refuse it too; Spark reads its defaults
        return {}
    found = {"quote": quote, "escape": escape}
    return {
        "sep": sep,
        **{key: '"' if value == "(empty)" else value for key, value in found.items()},
    }


def _named_fields(frame: DataFrame, csv_header: Sequence[str], first: str) -> DataFrame:
    """Name the fields (``_c0``, ``_c1``...) Spark reads from headerless CSV files.

    Partition columns (``date=2024-01-01/``) keep their names. For remote files, the
    one place the number of fields is known before the scan.
    """
    fields = [name for name in frame.columns if re.fullmatch(r"_c\d+", name)]
    if len(fields) != len(csv_header):
        raise DataValidationError(
            f"data.columns.csv_header names {len(csv_header)} column(s) {list(csv_header)}, but "
            f"the events ({first}) have {len(fields)} field(s); expected one name per field, "
            "in order"
        )
    names = dict(zip(fields, csv_header, strict=True))
    return frame.select(
        *[F.col(f"`{name}`").alias(names.get(name, name)) for name in frame.columns]
    )


def _mark_nanos(frame: DataFrame) -> DataFrame:
    """Tag the integer columns of a nanosecond Parquet read so validation converts them."""
    for field in frame.schema.fields:
        if isinstance(field.dataType, T.LongType):
            frame = frame.withMetadata(field.name, {**field.metadata, "segmentkit_nanos": True})
    return frame


def _timestamp_us(column: str, field: T.StructField) -> Column:
    """Expression for microseconds since the epoch (UTC), per the contract, or raise."""
    col = F.col(f"`{column}`")
    kind = field.dataType
    if isinstance(kind, T.TimestampType):  # an instant: independent of time zones
        return F.unix_micros(col)
    if isinstance(kind, T.TimestampNTZType):
        # Naive wall time, taken as UTC: the cast is analysed in UTC (see utc_session).
        return F.unix_micros(col.cast("timestamp"))
    if isinstance(kind, T.DateType):
        return F.unix_date(col).cast("bigint") * F.lit(MICROS_PER_DAY)
    if isinstance(kind, T.LongType) and field.metadata.get("segmentkit_nanos"):
        # Truncation toward zero, as DuckDB casts TIMESTAMP_NS to TIMESTAMP.
        return F.expr(f"`{column}` div 1000")
    if isinstance(kind, T.StringType):
        return F.unix_micros(F.expr(f"try_cast(`{column}` AS TIMESTAMP)"))
    raise DataValidationError(
        f"column {column!r} (timestamp): expected datetimes or date strings, "
        f"got type {kind.simpleString().upper()}"
        + (NUMERIC_TIMESTAMP_HINT if isinstance(kind, _NUMERIC_TYPES) else "")
    )


#: The column of microseconds that :func:`_with_formatted_timestamps` adds to the raw rows.
_FORMATTED_TS = "_sk_formatted_ts_us"


def _formatted(field: T.StructField, timestamp_format: str | None) -> bool:
    """Whether the column is read with ``timestamp_format``: text or numbers, as locally."""
    readable = isinstance(field.dataType, (T.StringType, *_NUMERIC_TYPES))
    return timestamp_format is not None and readable


def _with_formatted_timestamps(
    raw: DataFrame, field: T.StructField, timestamp_format: str
) -> DataFrame:
    """Add the timestamp column read with ``timestamp_format`` (microseconds, UTC).

    Spark's datetime patterns are not strptime's (``M`` against ``%m``, leniency on
    digits differs), so the column is read by the local engine's own DuckDB
    expression (:func:`segmentkit.io.events.timestamp_sql`), batch by batch in the
    executors: the same values parse, the same fail, as locally. A CSV read by Spark
    holds text where DuckDB infers numbers; epoch numbers in text are read as numbers.

    Raises
    ------
    DataValidationError
        The column's type cannot be read with the format (as locally), before any
        Spark work.
    """
    from pyspark.sql.pandas.types import to_arrow_type

    column = field.name
    con = connect(threads=1)
    empty = pa.table({column: pa.array([], type=to_arrow_type(field.dataType))})
    type_name = str(con.from_arrow(empty).types[0])
    source = "_sk_batch"
    if timestamp_format in UNIX_TIME_UNITS and type_name == "VARCHAR":
        quoted = sql_identifier(column)
        source = f"(SELECT TRY_CAST({quoted} AS DOUBLE) AS {quoted} FROM _sk_batch)"
        type_name = "DOUBLE"
    # Raises here, on the driver, for a type the format cannot read.
    sql = f"SELECT epoch_us({timestamp_sql(column, type_name, timestamp_format)}) FROM {source}"
    index = raw.columns.index(column)

    def parse(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        worker = connect(threads=1)
        worker.execute("SET preserve_insertion_order = true")  # one value per row, in order
        for batch in batches:
            worker.register("_sk_batch", pa.table({column: batch.column(index)}))
            micros = worker.sql(sql).to_arrow_table().column(0).combine_chunks()
            worker.unregister("_sk_batch")
            yield batch.append_column(_FORMATTED_TS, micros.cast(pa.int64()))

    # Spark's Arrow maps cannot resolve names holding a dot (a JSON log's flattened
    # ``properties.time``): they run on positional names, renamed back after.
    names = raw.columns
    plain = raw.toDF(*[f"_sk_c{i}" for i in range(len(names))])
    schema = T.StructType([*plain.schema.fields, T.StructField(_FORMATTED_TS, T.LongType())])
    return plain.mapInArrow(parse, schema).toDF(*names, _FORMATTED_TS)


def _float_ids(kind: T.DataType) -> bool:
    """Whether user ids of this type are numbers that may hold whole values (``12345.0``).

    As locally (``segmentkit.io.events._float_ids``): pandas writes an integer id column
    with a missing value as doubles; whole values are read as integers, others refused.
    """
    return isinstance(kind, T.FloatType | T.DoubleType) or (
        isinstance(kind, T.DecimalType) and kind.scale > 0
    )


def _user_expr(column: str, kind: T.DataType) -> Column:
    """Return the typed user id (NULL for a float id that is not a whole 64-bit number)."""
    col = F.col(f"`{column}`")
    if isinstance(kind, _INTEGER_TYPES):
        return col.cast("bigint")
    if _float_ids(kind):
        # Not floor(): on doubles it returns a long, and overflows (ANSI mode) past 64
        # bits. NaN and infinity leave a NaN remainder; try_cast nulls the rest.
        return F.when(col % F.lit(1) == 0, col.try_cast("bigint"))
    if isinstance(kind, T.StringType) or (isinstance(kind, T.DecimalType) and kind.scale == 0):
        return col.cast("string")
    raise DataValidationError(
        f"column {column!r} (user_id): expected strings or integers (or whole numbers stored "
        f"as floats), got type {kind.simpleString().upper()}"
    )


def _samples(
    frame: DataFrame,
    condition: Column,
    column: str,
    shown: Callable[[Any], str] | None = None,
) -> str:
    # Spark has no row order: the message shows offending values, not row numbers.
    value = F.col(f"`{column}`")
    values = frame.where(condition).select(value if shown else value.cast("string"))
    rows = [row[0] for row in values.limit(_SAMPLE_ROWS).collect()]
    return ", ".join(repr(shown(v) if shown and v is not None else v) for v in rows)


def load_events_spark(
    source: SparkEventSource,
    columns: ColumnMap | None = None,
    *,
    as_of: dt.date | dt.datetime | str | None = None,
    on_invalid: str = "drop",
    min_users: int = 1,
    spark: SparkSession | None = None,
    user_ranges: bool = False,
    derive: DeriveFactory | None = None,
    key_events: Sequence[str] = (),
) -> SparkEventLog:
    """Check a Spark event log against the data contract and clean it.

    The rules and messages of :func:`segmentkit.data.load_events`: a missing
    column, an unparseable timestamp, a non-numeric revenue or one that is NaN,
    infinite or not below ``MAX_REVENUE`` in absolute value, and an all-null event
    column raise; null user ids, timestamps or event names are dropped and counted
    (or raise with ``on_invalid="error"``);
    exact duplicate rows are dropped and counted; events at or after ``as_of`` are
    excluded and counted. Spark has no row order, so sample values are shown
    without row numbers.

    Parameters
    ----------
    source : pyspark.sql.DataFrame, str, Path or list of str
        A DataFrame, or Parquet/CSV paths, globs or URIs read with ``spark``.
    columns : ColumnMap, optional
        Names of the contract's columns in ``source``.
    as_of : date-like, optional
        Snapshot time; events at or after it are excluded (and counted).
    on_invalid : {"drop", "error"}
        What to do with rows whose user id, timestamp or event name is null.
    min_users : int
        Fewest distinct users the caller needs.
    spark : SparkSession, optional
        Session to read paths with (default: the active session).
    user_ranges : bool
        Shuffle the users into consecutive ranges of ids (partition ``i`` before
        ``i + 1``) rather than by hash, at the cost of a sample of the user ids (read
        from a few row groups of local Parquet files, else by a pass over the id
        column): what scoring needs to cut local scoring's chunks without another
        shuffle (:func:`segmentkit.spark.scoring.score_spark` asks for it).
    derive : callable, optional
        Given the Spark type of the clean user ids, returns a function and a schema:
        the function takes one partition's clean events (a local
        :class:`~segmentkit.io.events.EventLog` holding every event of its users),
        runs in the Python worker that cleans that partition, and returns an Arrow
        table of that schema. The log then keeps these tables, not the events
        (:func:`derived_frame` reads them), so that one pass over the shuffled rows
        cleans and computes (the features, in
        :func:`segmentkit.features.spark_engine.build_features_spark`).
    key_events : sequence of str
        Event names whose clean rows are counted in the same scan
        (:attr:`SparkEventLog.key_event_rows`: what scoring checks against the
        training log).

    Returns
    -------
    SparkEventLog
        The clean events, shuffled once by user (see ``user_ranges``),
        de-duplicated and packed per partition by DuckDB in Python workers, and kept
        on the executors (free them with :meth:`SparkEventLog.release`, or they go
        when garbage collected), and the data-quality report. The source is read
        once in full (``count`` reads only the footers of Parquet files; with
        ``user_ranges``, a sample of the user ids places the ranges): the raw
        rows' checks are observed while the shuffle reads them, the clean rows
        counted as each partition is packed.

    Raises
    ------
    DataValidationError, InsufficientDataError
        As :func:`segmentkit.data.load_events`.
    """
    if on_invalid not in ("drop", "error"):
        raise DataValidationError(f"on_invalid: expected 'drop' or 'error', got {on_invalid!r}")
    columns = columns or ColumnMap()
    check_csv_header(columns, DataValidationError)
    if columns.timestamp_format is not None:
        # A pattern DuckDB cannot read is refused before any Spark work, as locally.
        check_timestamp_pattern(connect(threads=1), columns)
    if isinstance(source, DataFrame):
        raw = source
        spark = raw.sparkSession
    elif isinstance(source, str | Path | list | tuple):
        spark = spark or SparkSession.getActiveSession()
        if spark is None:
            raise DataValidationError("events: reading paths on Spark needs an active SparkSession")
        raw = read_events_spark(spark, source, columns)
    else:
        raise DataValidationError(
            f"events: expected a Spark DataFrame or Parquet/CSV paths, got {type(source).__name__}"
        )
    with utc_session(spark):
        return _validate(
            raw, columns, as_of, on_invalid, min_users, user_ranges, derive, key_events
        )


def _validate(
    raw: DataFrame,
    columns: ColumnMap,
    as_of: dt.date | dt.datetime | str | None,
    on_invalid: str,
    min_users: int,
    user_ranges: bool,
    derive: DeriveFactory | None = None,
    key_events: Sequence[str] = (),
    strays: StrayRows | None = None,
) -> SparkEventLog:
    """Validate ``raw`` in one pass; again, without them, when it finds stray rows.

    ``strays``, found by the first pass, are left out of the second.
    """
    fields = {field.name: field for field in raw.schema.fields}
    source_columns = list(raw.columns)
    check_mapped_columns(columns, source_columns)
    has_revenue = columns.revenue is not None and columns.revenue in fields
    has_session = columns.session_id is not None and columns.session_id in fields

    if _formatted(fields[columns.timestamp], columns.timestamp_format):
        raw = _with_formatted_timestamps(raw, fields[columns.timestamp], columns.timestamp_format)
        ts_us = F.col(_FORMATTED_TS)
    else:
        ts_us = _timestamp_us(columns.timestamp, fields[columns.timestamp])
    user = _user_expr(columns.user_id, fields[columns.user_id].dataType)
    event = (
        F.col(f"`{columns.event}`").cast("string")
        if columns.event is not None
        else F.lit("purchase")
    )
    check_quantity_has_price(columns, has_revenue, raw.columns)
    revenue = price = quantity = F.lit(None).cast("double")
    if has_revenue:
        revenue = price = _number(
            columns.revenue, fields[columns.revenue].dataType, "revenue", columns.decimal_comma
        )
    if columns.quantity is not None:
        quantity = _number(
            columns.quantity, fields[columns.quantity].dataType, "quantity", columns.decimal_comma
        )
        revenue = price * quantity
    check_revenue_selection(columns, has_revenue)
    if columns.revenue_events is not None:
        revenue = F.when(event.isin(*columns.revenue_events), revenue)
    if columns.refund_events is not None:
        revenue = F.when(event.isin(*columns.refund_events), -F.abs(revenue)).otherwise(revenue)
    session = F.col(f"`{columns.session_id}`") if has_session else F.lit(None).cast("bigint")
    extra = _unmapped_hash(source_columns, columns, fields)

    cutoff = to_timestamp(as_of) if as_of is not None else None
    user_col, ts_col = F.col(f"`{columns.user_id}`"), F.col(f"`{columns.timestamp}`")
    bad_ts = ts_col.isNotNull() & ts_us.isNull()
    bad_user = (
        user_col.isNotNull() & user.isNull()
        if _float_ids(fields[columns.user_id].dataType)
        else F.lit(False)
    )
    bad_rev = (
        F.col(f"`{columns.revenue}`").isNotNull() & price.isNull() if has_revenue else F.lit(False)
    )
    bad_qty = (
        F.col(f"`{columns.quantity}`").isNotNull() & quantity.isNull()
        if columns.quantity is not None
        else F.lit(False)
    )
    late = (
        user_col.isNotNull() & (ts_us >= F.lit(epoch_us(cutoff)))
        if cutoff is not None
        else F.lit(False)
    )
    keep_base = user_col.isNotNull() & ts_col.isNotNull()
    if cutoff is not None:
        keep_base = keep_base & (ts_us < F.lit(epoch_us(cutoff)))
    # A row without an event name is dropped and counted, like one without a user id.
    null_event = event.isNull() if columns.event is not None else F.lit(False)
    keep = keep_base & ~null_event
    if strays is not None:
        start, end = (epoch_us(bound) for bound in strays.bulk_bounds())
        keep = keep & (ts_us >= F.lit(start)) & (ts_us < F.lit(end))
    # Revenue is summed as DECIMAL(18, 6) in the features: NaN, infinity and amounts of
    # 1e12 or more do not fit (and are data errors, not amounts).
    bad_amount = revenue.isNotNull() & (F.isnan(revenue) | ~(F.abs(revenue) < MAX_REVENUE))
    typed = [
        user.alias("user_id"),
        ts_us.alias("ts_us"),
        event.alias("event"),
        revenue.alias("revenue"),
        session.alias("session_id"),
        *([extra.alias("_sk_extra")] if extra is not None else []),
    ]
    # One scan answers every question about the raw rows; duplicates and users are
    # counted after the one shuffle by user (below). Each row's typed values and flags
    # are computed once, in the scan's generated code: the observed metrics (evaluated
    # row by row, outside it) then only count flags.
    flags = {
        "bad_ts": bad_ts,
        "bad_user": bad_user,
        "bad_rev": bad_rev,
        "bad_qty": bad_qty,
        "null_user": user_col.isNull(),
        "null_ts": ts_col.isNull(),
        "invalid": user_col.isNull() | ts_col.isNull(),
        "late": late,
        "keep": keep,
        "bad_amount": keep & bad_amount,
        "null_event": keep_base & null_event,
    }
    flagged = raw.select(*typed, *[flag.alias(f"_sk_{name}") for name, flag in flags.items()])

    def flag(name: str) -> Column:
        return F.col(f"_sk_{name}")

    checks = [
        F.count(F.lit(1)),
        F.count_if(flag("bad_ts")),
        F.count_if(flag("bad_rev")),
        F.count_if(flag("null_user")),
        F.count_if(flag("null_ts")),
        F.count_if(flag("invalid")),
        F.count_if(flag("late")),
        F.min(F.when(flag("keep"), F.col("ts_us"))),
        F.max(F.when(flag("keep"), F.col("ts_us"))),
        F.count_if(flag("bad_amount")),
        F.count_if(flag("null_event")),
        F.count_if(flag("bad_user")),
        F.count_if(flag("bad_qty")),
    ]
    key_names = sorted({str(name) for name in key_events})
    checks += [F.count_if(flag("keep") & (F.col("event") == F.lit(name))) for name in key_names]
    # Events with amounts above 0, and every event (to check revenue_events' and
    # refund_events' spelling, and a log to score against the training log's events), as
    # JSON text: observed metrics reach Python as Java objects, and text converts.
    paid_event = F.when(flag("keep") & (F.col("revenue") > 0), F.col("event"))
    checks.append(F.to_json(F.collect_set(paid_event)))
    checks.append(F.to_json(F.collect_set(F.when(flag("keep"), F.col("event")))))
    # The source is read once in full: the shuffle by user counts these checks as it reads the
    # raw rows (observed metrics), then the clean rows are counted per partition.
    name = f"segmentkit_validation_{next(_observation_ids)}"
    observed = flagged.observe(name, *[check.alias(f"c{i}") for i, check in enumerate(checks)])
    by_user, shuffle, bounds = _partitioned_by_user(
        observed.where(flag("keep")).select(
            "user_id",
            "ts_us",
            "event",
            "revenue",
            "session_id",
            *(["_sk_extra"] if extra is not None else []),
        ),
        raw,
        user.alias("user_id") if user_ranges else None,
        columns.user_id,
    )
    function, derived = derive(by_user.schema["user_id"].dataType) if derive else (None, None)
    try:
        packed = _pack(
            by_user,
            functools.partial(
                _pack_partition,
                derive=function,
                has_revenue=has_revenue,
                has_session_id=has_session,
            ),
        )
        counts = shuffle.observedMetrics().get(name).get()
        counts = [counts.get(i) for i in range(len(checks))]
    finally:
        # The packed log holds everything later passes read.
        release_shuffle(by_user)
    try:
        # One row of counts per partition (the packed streams are not read).
        partition_users = [0] * packed.rdd.getNumPartitions()
        rows_clean = users = negative = 0
        for part, rows, part_users, refunds in (
            packed.where(F.col("rows").isNotNull())
            .select(F.spark_partition_id(), "rows", "users", "negative")
            .collect()
        ):
            partition_users[part] = int(part_users)
            rows_clean, users, negative = rows_clean + rows, users + part_users, negative + refunds
    except BaseException:
        release_checkpoint(packed)
        raise
    rows_read, n_bad_ts, n_bad_rev, null_user, null_ts, invalid, after = (
        int(c) for c in counts[:7]
    )
    first, last = counts[7:9]
    n_bad_amount, n_null_event, n_bad_user = int(counts[9]), int(counts[10]), int(counts[11])
    n_bad_qty = int(counts[12])
    key_counts = counts[13 : 13 + len(key_names)]
    paid_events, every_event = (json.loads(names) for names in counts[13 + len(key_names) :])
    examples = {
        "bad_ts": (bad_ts, columns.timestamp),
        "bad_user": (bad_user, columns.user_id),
        "bad_rev": (bad_rev, columns.revenue),
        "bad_qty": (bad_qty, columns.quantity),
        "bad_amount": (keep & bad_amount, columns.revenue),
        "null_event": (keep_base & null_event, columns.event),
    }

    def example(kind: str, column: str | None = None) -> str:
        if kind in examples:
            return _samples(raw, *examples[kind])
        return _samples(raw, F.col(f"`{column}`").isNull(), column)

    counts_by_name = {
        "bad_ts": n_bad_ts,
        "bad_user": n_bad_user,
        "bad_rev": n_bad_rev,
        "bad_qty": n_bad_qty,
        "bad_amount": n_bad_amount,
        "null_event": n_null_event,
        "null_user": null_user,
        "null_ts": null_ts,
        "invalid": invalid,
    }
    try:
        check_invalid_values(
            columns,
            counts_by_name,
            rows_usable=rows_read - invalid - after,
            on_invalid=on_invalid,
            example=example,
        )
        last_event = _from_epoch_us(last) if last is not None else None
        first_event = _from_epoch_us(first) if first is not None else None
        found = None
        if strays is None and could_hold_strays(first_event, last_event):
            found = find_stray_rows(_day_rows(flagged.where(flag("keep"))))
        if found is not None:
            check_stray_rows(found, rows_read, columns, on_invalid)
        else:

            def kept_from(limit: dt.datetime) -> Column:
                return flag("keep") & (F.col("ts_us") >= F.lit(epoch_us(limit)))

            check_no_future_events(
                cutoff,
                last_event,
                lambda limit: flagged.where(kept_from(limit)).count(),
                lambda limit: _samples(
                    flagged,
                    kept_from(limit),
                    "ts_us",
                    shown=lambda micros: _from_epoch_us(int(micros)).isoformat(sep=" "),
                ),
            )
            if has_revenue and columns.event is not None:
                check_revenue_by_event(
                    columns,
                    paid_events or (),
                    lambda: every_event or (),
                    lambda: _paid_rows(flagged.where(flag("keep") & (F.col("revenue") > 0))),
                )
    except BaseException:
        release_checkpoint(packed)
        raise
    if found is not None:
        release_checkpoint(packed)
        # The log is its bulk: read again without the strays (only when there are).
        return _validate(
            raw, columns, as_of, on_invalid, min_users, user_ranges, derive, key_events, found
        )
    n_stray = strays.rows if strays is not None else 0
    kept = rows_read - invalid - after - n_null_event - n_stray
    report = DataQualityReport(
        rows_read=rows_read,
        null_user_id=null_user,
        null_timestamp=null_ts,
        null_event=n_null_event,
        stray_timestamp=n_stray,
        duplicate_rows=kept - rows_clean,
        at_or_after_as_of=after,
        negative_revenue_rows=negative,
        rows_clean=rows_clean,
        users=users,
        first_event=_from_epoch_us(first).isoformat() if first is not None else None,
        last_event=_from_epoch_us(last).isoformat() if last is not None else None,
        duplicates_checked=True,
    )
    try:
        check_enough_left(report, cutoff, min_users)
    except Exception:
        release_checkpoint(packed)
        raise
    anonymous = []
    candidates = anonymous_id_columns(source_columns, columns) if report.null_user_id else []
    if candidates:  # as locally: the columns that hold a value on every row without a user id
        held = (
            raw.where(F.col(f"`{columns.user_id}`").isNull())
            .agg(*[F.bool_and(F.col(f"`{name}`").isNotNull()) for name in candidates])
            .first()
        )
        anonymous = [name for name, every in zip(candidates, held, strict=True) if every]
    dropped = dropped_rows_message(report, columns, anonymous)
    if dropped is not None:
        warnings.warn(dropped, SegmentkitWarning, stacklevel=3)
    return SparkEventLog(
        packed=packed,
        schema=T.StructType([f for f in by_user.schema.fields if f.name != "_sk_extra"]),
        report=report,
        has_revenue=has_revenue,
        has_session_id=has_session,
        as_of=cutoff,
        partition_users=tuple(partition_users) if bounds is not None else (),
        user_bounds=tuple(bounds or ()),
        derived=derived,
        columns=columns,
        source_columns=tuple(source_columns),
        key_event_rows={name: int(n) for name, n in zip(key_names, key_counts, strict=True)},
        clean_rows=flagged.where(flag("keep")).select("ts_us", "event"),
        event_names=tuple(sorted(str(name) for name in every_event or () if name is not None)),
    )


def _paid_rows(paid: DataFrame) -> dict[str, tuple[int, int]]:
    """Count, per event of ``paid`` (rows with revenue above 0), its rows and recurring ones.

    A row recurs when its user and amount recur on another event (see
    ``check_revenue_by_event``).
    """
    kinds = paid.groupBy("user_id", "revenue").agg(F.count_distinct("event").alias("n"))
    counts = (
        paid.join(kinds, ["user_id", "revenue"])
        .groupBy("event")
        .agg(F.count(F.lit(1)), F.count_if(F.col("n") > 1))
        .collect()
    )
    return {str(name): (int(n), int(shared)) for name, n, shared in counts}


def check_spark_input(log: SparkEventLog, schema: Mapping[str, Any] | None) -> list[str]:
    """Check a Spark log about to be scored as :func:`segmentkit.io.events.check_input` does.

    The same rules and messages: ``as_of`` past the log's end by more than its own
    longest quiet spell (the distinct days of the clean rows are read only when
    ``as_of`` is after the midnight following the last event), a column the model
    was trained with that the log lacks, key events of the training log spelled
    otherwise (the event names are read only when a key event is unseen).

    Returns
    -------
    list of str
        Warnings: key events seen in training that never occur in ``log``.

    Raises
    ------
    DataValidationError
        As :func:`segmentkit.io.events.check_input`.
    """
    clean = log.clean_rows
    if log.as_of is not None and log.report.last_event is not None and clean is not None:

        def quiet_spell() -> int:
            day = F.floor(F.col("ts_us") / F.lit(MICROS_PER_DAY)).alias("day")
            with utc_session(clean.sparkSession):
                days = sorted(int(row[0]) for row in clean.select(day).distinct().collect())
            return max((b - a - 1 for a, b in itertools.pairwise(days)), default=0)

        check_as_of_reaches_log_end(log.as_of, log.report.last_event, quiet_spell)
    columns = log.columns or ColumnMap()
    present = roles_present(columns, log.has_revenue, log.has_session_id)

    def seen(expected: Sequence[str]) -> Sequence[str]:
        counted = log.key_event_rows
        if set(expected) <= set(counted):  # counted while loading: no other read
            return [name for name in expected if counted[name]]
        if clean is None:  # pragma: no cover - nothing to read them from
            return list(expected)
        names = event_names()
        return [name for name in expected if name in names]

    @functools.cache
    def event_names() -> frozenset:
        if log.event_names is not None:  # collected while loading: no other read
            return frozenset(log.event_names)
        if clean is None:  # pragma: no cover - seen() then took every key event as seen
            return frozenset()
        with utc_session(clean.sparkSession):
            rows = clean.select("event").distinct().collect()
        return frozenset(row[0] for row in rows)

    return check_against_training(
        schema,
        present=present,
        source_columns=log.source_columns,
        event_column=columns.event,
        seen=seen,
        event_names=event_names,
    )


def release_checkpoint(frame: DataFrame) -> None:
    """Free the blocks of a frame made by ``localCheckpoint`` before it is garbage collected."""
    plan = frame._jdf.queryExecution().analyzed()
    if plan.nodeName() == "LogicalRDD":
        plan.rdd().unpersist(False)


def release_shuffle(frame: DataFrame) -> None:
    """Delete the files of the shuffle ``frame`` reads (made by :func:`_partitioned_by_user`)."""
    spark = frame.sparkSession
    cleaner = spark.sparkContext._jsc.sc().cleaner()
    if cleaner.isEmpty():  # pragma: no cover - spark.cleaner.referenceTracking=false
        return
    pending = [frame._jdf.queryExecution().analyzed().rdd()]
    while pending:
        rdd = pending.pop()
        dependencies = rdd.dependencies()
        for i in range(dependencies.size()):
            dependency = dependencies.apply(i)
            if dependency.getClass().getSimpleName() == "ShuffleDependency":
                cleaner.get().doCleanupShuffle(dependency.shuffleId(), False)
            else:
                pending.append(dependency.rdd())


def _partitioned_by_user(
    rows: DataFrame, source: DataFrame, user: Column | None, user_column: str | None = None
) -> tuple[DataFrame, object, list | None]:
    """``rows`` after one shuffle by user, as a frame that reads that shuffle's files.

    Users go to partitions by the hash of their id or, when ``user`` (an expression
    of ``source``'s columns giving the id, read from its column ``user_column``) is
    given, by ranges of ids: partition ``i`` receives the users above
    ``bounds[i - 1]`` and at or below ``bounds[i]`` (:func:`user_bounds`, from a
    sample of ``source``'s ids). The frame's query
    is planned here (without adaptive execution, so that its partitions are the
    shuffle's), so that the metrics observed while the shuffle reads ``source`` can be
    read from that plan once it has run.
    There are ``spark.sql.shuffle.partitions`` partitions, more when ``source`` has
    more than that many times :data:`ROWS_PER_PARTITION` rows.

    Returns
    -------
    tuple
        The frame; the shuffle's query execution (JVM), which holds the metrics
        observed while the shuffle read ``source``; and the bounds (``None`` when
        partitioned by hash).
    """
    spark = rows.sparkSession
    # Counting Parquet rows reads only the files' footers.
    total = source.count()
    partitions = max(
        int(spark.conf.get("spark.sql.shuffle.partitions")), -(-total // ROWS_PER_PARTITION)
    )
    bounds = None
    key = F.col("user_id")
    if user is not None:
        sample = parquet_user_sample(source, user_column, _sample_size(partitions))
        bounds = user_bounds(source.select(user), total, partitions, sample)
        # Spark places a row by the hash of its key: one key per range, chosen so that
        # range i lands in partition i.
        keys = F.array(*[F.lit(k).cast("bigint") for k in _partition_keys(spark, partitions)])
        key = F.element_at(keys, range_index(F.col("user_id"), bounds) + 1)
    # Adaptive execution would plan the shuffle anew at every read.
    with session_conf(spark, "spark.sql.adaptive.enabled", "false"):
        shuffled = rows.repartition(partitions, key)._jdf
        execution = shuffled.queryExecution()
        internal = execution.toRdd()
        jframe = spark._jsparkSession.internalCreateDataFrame(internal, shuffled.schema(), False)
    return DataFrame(jframe, spark), execution, bounds


#: Users sampled per partition to place the bounds between partitions.
_SAMPLE_PER_PARTITION = 256
#: Most row groups of local Parquet files whose ids are read to place the bounds.
_SAMPLE_ROW_GROUPS = 32


def _sample_size(partitions: int) -> int:
    return 2 * _SAMPLE_PER_PARTITION * partitions


def user_bounds(users: DataFrame, rows: int, partitions: int, sample: list | None = None) -> list:
    """Ids that cut ``users`` (one column, a row per event) into ``partitions`` ranges.

    From ``sample`` (ids drawn evenly from the events, e.g. by
    :func:`parquet_user_sample`) or, when it is ``None``, from a seeded sample of about
    ``2 * _SAMPLE_PER_PARTITION`` rows per partition, which reads the whole column
    (the same data gives the same bounds either way), so ranges hold about as many
    events. Sorted and distinct; fewer than ``partitions - 1`` when the sample has
    few distinct ids. Any bounds give the same results: they only balance the work.
    """
    if partitions < 2 or rows == 0:
        return []
    if sample is None:
        fraction = min(1.0, _sample_size(partitions) / rows)
        column = users.columns[0]
        sample = [
            row[0]
            for row in users.where(F.col(column).isNotNull())
            .sample(fraction=fraction, seed=0)
            .collect()
        ]
    sample = sorted(sample)
    if not sample:
        return []
    cuts = [sample[i * len(sample) // partitions] for i in range(1, partitions)]
    return sorted(set(cuts))


def parquet_user_sample(source: DataFrame, column: str | None, size: int) -> list | None:
    """About ``size`` ids of ``source``'s ``column`` read from its Parquet files' row groups.

    Only for a frame that is a plain read of local Parquet files with string or
    integer ids (``None`` otherwise, or when the files cannot be read so: the caller
    then samples with Spark). One task (a Python worker, so that what it reads never
    weighs on the driver) reads the footers, then the id column of at most
    :data:`_SAMPLE_ROW_GROUPS` row groups spread evenly over the rows, and takes
    evenly spaced ids from each, in proportion to its rows: ids from every part of
    a log ordered by time (each row group spans the ids) or by user (row groups
    follow one another), without a pass over the whole column. The driver receives
    the ids only.
    """
    files = _local_parquet_files(source) if column is not None else None
    if not files:
        return None
    kind = source.schema[column].dataType
    if isinstance(kind, T.StringType):
        wanted: type = str
    elif isinstance(kind, _INTEGER_TYPES):
        wanted = int
    else:
        return None
    if len(files) > _SAMPLE_ROW_GROUPS:
        files = [files[i * len(files) // _SAMPLE_ROW_GROUPS] for i in range(_SAMPLE_ROW_GROUPS)]
    task = source.sparkSession.sparkContext.parallelize([None], 1)
    [sample] = task.mapPartitions(lambda _: [_row_group_sample(files, column, size)]).collect()
    if sample is None or not all(isinstance(v, wanted) and not isinstance(v, bool) for v in sample):
        return None
    return sample


def _row_group_sample(files: list[str], column: str, size: int) -> list | None:
    """Ids of :func:`parquet_user_sample` (``None`` when the files cannot be read so)."""
    try:
        groups = []
        for path in files:
            meta = pq.read_metadata(path)
            groups += [(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
        starts = np.cumsum([0, *(rows for _, _, rows in groups)])
        total = int(starts[-1])
        if total == 0:
            return []
        picks = min(len(groups), _SAMPLE_ROW_GROUPS)
        # The row group holding each of `picks` evenly spaced rows.
        chosen = sorted(
            {
                int(np.searchsorted(starts, (j + 0.5) * total / picks, side="right")) - 1
                for j in range(picks)
            }
        )
        chosen_rows = sum(groups[g][2] for g in chosen)
        sample: list = []
        for g in chosen:
            path, index, rows = groups[g]
            take = min(rows, -(-size * rows // chosen_rows))
            places = np.unique(np.linspace(0, rows - 1, take).round().astype(np.int64))
            # In batches, without reading ahead or threads: memory stays that of a batch.
            reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 16)
            seen = 0
            for batch in reader.iter_batches(
                batch_size=65_536, row_groups=[index], columns=[column], use_threads=False
            ):
                here = places[(places >= seen) & (places < seen + batch.num_rows)] - seen
                ids = batch.column(0).take(pa.array(here)).drop_null()
                sample += ids.to_pylist()
                seen += batch.num_rows
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return sample


def _local_parquet_files(frame: DataFrame) -> list[str] | None:
    """Return the local files of a frame that is a plain Parquet read (else ``None``)."""
    try:
        plan = frame._jdf.queryExecution().analyzed()
        if plan.nodeName() != "LogicalRelation":
            return None
        relation = plan.relation()
        if relation.getClass().getSimpleName() != "HadoopFsRelation":
            return None
        if relation.fileFormat().getClass().getSimpleName() != "ParquetFileFormat":
            return None
        uris = list(frame.inputFiles())
    except Py4JError:  # a plan Spark cannot describe so: sampled by Spark instead
        return None
    if not uris or any(urllib.parse.urlparse(uri).scheme != "file" for uri in uris):
        return None
    # Sorted: Spark lists them in no set order, and the sample must not depend on it.
    return sorted(urllib.parse.unquote(urllib.parse.urlparse(uri).path) for uri in uris)


#: Keys found by :func:`_partition_keys`, by number of partitions: Spark's hash is
#: fixed (Murmur3, seed 42), so they hold in every session.
_KEYS_BY_PARTITIONS: dict[int, list[int]] = {}


def _partition_keys(spark: SparkSession, partitions: int) -> list[int]:
    """One bigint per partition, the ``i``-th one hashing to partition ``i``.

    Asks Spark itself (``pmod(hash(key), partitions)`` is how it places a row of a
    ``repartition`` by ``key``), over enough candidates that every partition is hit;
    once per number of partitions in a process.
    """
    if partitions in _KEYS_BY_PARTITIONS:
        return _KEYS_BY_PARTITIONS[partitions]
    candidates = 64 * partitions
    while True:
        found = dict(
            spark.range(0, candidates)
            .groupBy(F.expr(f"pmod(hash(id), {partitions})"))
            .agg(F.min("id"))
            .collect()
        )
        if len(found) == partitions:
            keys = [int(found[i]) for i in range(partitions)]
            _KEYS_BY_PARTITIONS[partitions] = keys
            return keys
        candidates *= 4  # pragma: no cover - 64 candidates per partition suffice


def range_index(value: Column, bounds: Sequence) -> Column:
    """How many of the sorted ``bounds`` ``value`` exceeds, by binary search.

    A row evaluates about log2(len(bounds)) comparisons, not one per bound.
    """

    def search(lo: int, hi: int) -> Column:  # the answer is in [lo, hi]
        if lo == hi:
            return F.lit(lo)
        mid = (lo + hi) // 2
        return F.when(value > F.lit(bounds[mid]), search(mid + 1, hi)).otherwise(search(lo, mid))

    return search(0, len(bounds))


def _pack(
    by_user: DataFrame, pack_partition: Callable[[Iterator[pa.RecordBatch]], Iterator]
) -> DataFrame:
    """Drop duplicates, count and pack each partition (:func:`_pack_partition`), and keep it.

    The one pass that converts the events to Arrow: later passes read the packed
    streams (a few large values per partition), not rows.
    """
    spark = by_user.sparkSession
    # Fewer, larger Arrow batches cost the JVM less (read when the job runs, here); batches
    # of _PACK_ROWS events are a few MB, so they are not also measured in bytes.
    with (
        session_conf(spark, _ARROW_BATCH, str(_PACK_ROWS)),
        session_conf(spark, _ARROW_BATCH_BYTES, _NO_BYTE_LIMIT),
    ):
        return by_user.mapInArrow(pack_partition, _PACKED_SPARK_SCHEMA).localCheckpoint(eager=True)


def check_spark_output_target(out: str | Path, events: str | Path | None = None) -> str:
    """Refuse, before any Spark work, an output dataset that would destroy or join the log.

    The Spark engine writes a Parquet *directory* and replaces whatever is at its
    path: an existing output dataset is fine, but not one that is, or holds, an
    events file (it would be deleted), nor one inside an events directory or matched
    by the events glob (the scores would be read as events next time).

    Parameters
    ----------
    out : str or Path
        The output: a local ``.parquet`` path or a URI.
    events : str or Path, optional
        The input: a path, glob or URI, as :func:`read_events_spark` reads it.

    Returns
    -------
    str
        ``out`` as given.

    Raises
    ------
    DataValidationError
        ``out`` is no ``.parquet`` path nor URI, is (or holds, or lies inside) the
        events, or its nearest existing directory is not a writable directory.
    """
    text = str(out)
    if not text.rstrip("/").endswith(".parquet") and "://" not in text:
        raise DataValidationError(f"output {text}: expected a .parquet path for the Spark engine")
    if "://" in text and not text.startswith("file://"):
        # Another file system: its paths are compared as written.
        target = text.rstrip("/")
        inputs = [str(events).rstrip("/")] if events is not None else []
        for item in inputs:
            if item == target or item.startswith(target + "/"):
                raise _replaces_log(text, item)
            if target.startswith(item + "/"):
                raise _inside_log(text, item)
        return text
    target_path = Path(text.removeprefix("file://")).resolve()
    item = str(events).removeprefix("file://") if events is not None else None
    if item is not None and "://" not in item:
        pattern = str(Path(item).absolute()) if glob.has_magic(item) else None
        for path in sorted(glob.glob(item)) if pattern else [item]:
            resolved = Path(path).resolve()
            if resolved == target_path or target_path in resolved.parents:
                raise _replaces_log(text, path)
            if resolved in target_path.parents:
                raise _inside_log(text, path)
        if pattern and fnmatch.fnmatch(str(target_path), str(Path(pattern).resolve())):
            raise _inside_log(text, item)
    check_output_parent(target_path)
    return text


def _replaces_log(out: str, events: str) -> DataValidationError:
    return DataValidationError(
        f"output {out} is or holds the events {events}: Spark replaces the whole output "
        "directory, which would delete the event log; choose another output path"
    )


def _inside_log(out: str, events: str) -> DataValidationError:
    return DataValidationError(
        f"output {out} is inside the events {events}: the scores would be read as events "
        "next time; choose another output path"
    )


def default_as_of_spark(log: SparkEventLog) -> dt.datetime:
    """Return the midnight after the last event (as :func:`segmentkit.data.default_as_of`)."""
    check_no_late_tail(_day_rows(log.clean_rows), log.report.last_event)
    return midnight_after(log.report.last_event)


def _day_rows(rows: DataFrame) -> dict[dt.date, int]:
    """Rows per UTC day with events, of a frame with ``ts_us`` (one small Spark job)."""
    day = F.floor(F.col("ts_us") / F.lit(MICROS_PER_DAY)).alias("day")
    epoch = dt.date(1970, 1, 1)
    return {epoch + dt.timedelta(days=int(d)): n for d, n in rows.groupBy(day).count().collect()}
