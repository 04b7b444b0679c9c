"""Typed configuration read from ``params.yaml``.

Each stage of the pipeline reads its own section. Unknown keys and values of the
wrong type are refused with an error naming the offending key, so a typo in
``params.yaml`` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from segmentkit.errors import ConfigError, SegmentkitError
from segmentkit.serialization import from_jsonable, to_jsonable

__all__ = [
    "ColumnMap",
    "Config",
    "DataConfig",
    "DemoConfig",
    "DriftConfig",
    "FeatureConfig",
    "PropensityConfig",
    "SegmentationConfig",
    "SparkConfig",
    "TargetConfig",
    "TrackingConfig",
    "load_config",
]


#: Propensity target names: they become file names in the bundle.
TARGET_NAME = re.compile(r"[a-z0-9_-]+")
#: Model families competing for each propensity target (see
#: :data:`segmentkit.models.propensity.CANDIDATES`).
PROPENSITY_CANDIDATES: tuple[str, ...] = (
    "logistic",
    "hgb",
    "logistic+bgnbd",
    "hgb+bgnbd",
    "bgnbd",
)
#: Registered model names: they name a directory under ``tracking.models_dir``.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ColumnMap:
    """Names of the contract's columns in the user's log.

    ``revenue`` and ``session_id`` are optional: by default they are used when the
    log has them. Mapped explicitly in ``params.yaml`` (listed in ``explicit``, which
    the loader fills in), the column must exist; mapped to ``null``, it is not used.

    ``timestamp_format`` says how to read a timestamp column of text or numbers that
    is not ISO 8601: a ``strptime`` pattern (``%m/%d/%Y %H:%M`` for UCI Online
    Retail's ``12/1/2010 8:26``, ``%Y%m%d`` for CDNOW's ``19970101``; ``%z`` reads an
    offset, converted to UTC), or ``unix_s``, ``unix_ms`` or ``unix_us`` for numbers
    (or numbers in text) counting seconds, milliseconds or microseconds since 1970-01-01
    UTC. A column already typed as dates or timestamps is read as it is.

    ``quantity`` names a column of units for order-line exports that give a unit price
    but no amount (UCI Online Retail's ``UnitPrice`` and ``Quantity``): mapped, the
    ``revenue`` column is read as the unit price and a row's revenue is price times
    quantity (a negative quantity, a returned line, gives a refund). Never used unless
    mapped: a log whose revenue column already holds line amounts would be
    multiplied twice.

    ``revenue_events`` names the events whose revenue is money spent or refunded
    (``purchase``, ``refund``): the revenue of every other row is ignored. Logs that
    give a product's price on every row (views and carts too, as REES46's exports
    do) need it; ``None`` counts the revenue of every row, and a log with positive
    amounts on rows of more than one event is then refused rather than summed.

    ``refund_events`` names the events whose amounts are money returned, read as
    negative whatever sign the log gives them (GA4's ``refund``, a payment
    processor's refund rows carry amounts above 0); summed as they are, refunds
    would count as spending.

    ``csv_encoding`` is the text encoding of CSV files: ``utf-8`` (``None``, the
    default), ``latin-1`` (ISO-8859-1, as Excel and older tools export, e.g. the UCI
    Online Retail ``data.csv`` on Kaggle) or ``utf-16``.

    ``decimal_comma`` reads amounts written with a decimal comma (``12,5``, as Excel
    writes them in many European locales, with ``;`` between fields): the revenue and
    quantity columns' text, where it is text. A value with another comma or a dot
    besides (``1.234,5``) is then not a number.

    ``csv_header`` names, in order, the columns of CSV files that have no header row
    (Taobao's ``UserBehavior.csv``: ``user, item, category, behavior, time``); their
    first line is then read as data. ``None`` reads each file's first line as its
    column names. Parquet files and DataFrames name their own columns: it is not used
    for them.
    """

    user_id: str = "user_id"
    timestamp: str = "timestamp"
    event: str | None = "event"
    revenue: str | None = "revenue"
    session_id: str | None = "session_id"
    explicit: tuple[str, ...] = ()
    timestamp_format: str | None = None
    quantity: str | None = None
    revenue_events: tuple[str, ...] | None = None
    csv_header: tuple[str, ...] | None = None
    refund_events: tuple[str, ...] | None = None
    csv_encoding: str | None = None
    decimal_comma: bool = False


@dataclass(frozen=True)
class DemoConfig:
    """Demo log generated when no event log is given."""

    users: int = 20_000
    days: int = 240
    seed: int = 7
    path: str = "data/demo_events.parquet"


@dataclass(frozen=True)
class DataConfig:
    """Where the events come from and how they are read."""

    events: str | None = None
    as_of: dt.date | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    on_invalid: Literal["drop", "error"] = "drop"
    demo: DemoConfig = field(default_factory=DemoConfig)


@dataclass(frozen=True)
class FeatureConfig:
    """Feature windows and depth settings."""

    windows: tuple[int, ...] = (30, 90)
    session_gap_minutes: int = 30
    key_events: tuple[str, ...] = ("purchase", "add_to_cart")


@dataclass(frozen=True)
class SegmentationConfig:
    """Clustering algorithm and the rule that chooses the number of segments."""

    algorithm: Literal["kmeans", "gmm", "hdbscan"] = "kmeans"
    k: int | Literal["auto"] = "auto"
    k_range: tuple[int, int] = (3, 10)
    n_bootstrap: int = 20
    bootstrap_sample: int = 20_000
    min_stability: float = 0.75
    min_share: float = 0.02
    silhouette_sample: int = 2_000
    random_state: int = 0


@dataclass(frozen=True)
class TargetConfig:
    """One propensity target."""

    name: str
    kind: Literal["inactivity", "event", "count"]
    event: str | None = None
    horizon_days: int | None = None


@dataclass(frozen=True)
class PropensityConfig:
    """Propensity targets and how their training snapshots are laid out."""

    horizon_days: int = 30
    n_snapshots: int = 3
    snapshot_step_days: int = 30
    min_positives: int = 50
    random_state: int = 0
    # Threads while fitting; 1 avoids OpenMP oversubscription on small shared machines.
    n_threads: int | None = 1
    # Families judged out of time per target, and the most training rows they are
    # compared on (a stratified sample; only the winner is fitted on every row).
    candidates: tuple[str, ...] = PROPENSITY_CANDIDATES
    selection_rows_max: int = 100_000
    # Most stacked snapshot rows a model is fitted on (a sample stratified by snapshot
    # and label); null = every row.
    training_rows_max: int | None = 200_000
    targets: tuple[TargetConfig, ...] = ()


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of the drift checks run on refresh (``params.yaml`` → ``drift``).

    A refresh's status comes from the checks calibrated against ageing
    (:mod:`segmentkit.drift.verdict`) and the propensity backtests. The raw
    feature PSI, the segment-mix PSI and the champion-vs-challenger ARI are
    reported for reading without a status on refresh (they fire on ageing alone
    or vary between refits of unchanged behaviour); ``share_psi_*`` and
    ``ari_*`` judge them only in :func:`segmentkit.drift.run_drift_tests` called
    directly. Each ``*_warn`` must not exceed its ``*_drift`` (for ARI, lower is
    worse: ``ari_drift <= ari_warn``).
    """

    # PSI beyond what ageing alone produced (aged_psi, nonzero_psi) and between the
    # champion's stored snapshot and the same snapshot recomputed (history).
    psi_warn: float = 0.1
    psi_drift: float = 0.25
    # Raw segment-mix PSI and ARI: run_drift_tests only (informational on refresh).
    share_psi_warn: float = 0.1
    share_psi_drift: float = 0.25
    ari_warn: float = 0.8
    ari_drift: float = 0.6
    # Quantile bins of the feature references stored at training.
    n_bins: int = 10
    # Segment shares: now vs what ageing predicts, as a ratio larger/smaller.
    share_ratio_warn: float = 1.5
    share_ratio_drift: float = 2.0
    # A segment holding >= share_min of users that falls below share_gone vanished
    # (and the reverse appeared); smaller segments are not judged on ratios.
    share_min: float = 0.02
    share_gone: float = 0.005
    # Cap on a segment's own ageing trend (share then / share one interval before).
    share_max_trend: float = 2.0
    # New behaviour: users who joined since the champion lying beyond the distance
    # new_behaviour_quantile of their segment's users had, minus the same share among
    # the previous newcomers (0.05 = 5 percentage points).
    new_behaviour_warn: float = 0.05
    new_behaviour_drift: float = 0.10
    new_behaviour_quantile: float = 0.99
    # Fewest misfit newcomers (and previous newcomers) for a WARN or DRIFT.
    new_behaviour_min_users: int = 20
    # Typical positive value (e.g. spend per buyer) moving beyond its ageing trend,
    # as a ratio either way (1.25 = up 25% or down to 1/1.25) ...
    value_shift_warn: float = 1.25
    value_shift_drift: float = 1.5
    # ... and beyond sampling noise (standard errors of the log-ratio).
    value_shift_z_warn: float = 3.0
    value_shift_z_drift: float = 4.0
    # Fewest users with a positive value on each side for the non-zero tests.
    nonzero_min_users: int = 50
    # Event types: one holding >= event_min_share of events that falls below
    # event_gone_ratio of that share vanished (DRIFT); one absent before that now
    # holds event_min_share appeared (WARN).
    event_min_share: float = 0.005
    event_gone_ratio: float = 0.1
    # Champion's propensity models on outcomes known now: ROC AUC lost.
    auc_drop_warn: float = 0.05
    auc_drop_drift: float = 0.1
    # Fewest users one interval before the champion's snapshot to calibrate against
    # ageing (fewer: raw PSI, no trend).
    min_baseline_users: int = 50
    # A change on all users is carried by newcomers when the users already there one
    # interval before show no WARN and at most this fraction of it.
    newcomer_max_established_share: float = 0.5


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow experiment and registry names."""

    experiment: str = "segmentkit"
    registered_model: str = "segmentkit-demo"
    tracking_uri: str | None = None
    models_dir: str = "models"
    # One HTTP request to a tracking server: timeout and retries after a failure.
    # Defaults keep a silent server under 30 s (2 x 10 s); MLflow's own
    # MLFLOW_HTTP_REQUEST_TIMEOUT / MLFLOW_HTTP_REQUEST_MAX_RETRIES win when set.
    request_timeout_s: int = 10
    request_retries: int = 1
    # Longest wait for another segmentkit run publishing to the same sqlite store.
    store_lock_timeout_s: int = 600


@dataclass(frozen=True)
class SparkConfig:
    """Settings of the Spark engine (``--engine spark``)."""

    # Users whose events are collected to the driver to fit the models on.
    sample_users: int = 200_000


@dataclass(frozen=True)
class Config:
    """All of ``params.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    propensity: PropensityConfig = field(default_factory=PropensityConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values (dates as ISO strings)."""
        return to_jsonable(self)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read ``params.yaml`` into a validated :class:`Config`.

    Parameters
    ----------
    path : str or Path, optional
        YAML file. ``None`` gives the built-in defaults.
    overrides : dict, optional
        Nested values applied on top of the file, e.g. ``{"data": {"as_of": "2024-01-01"}}``.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, a key is unknown, or a value has the wrong type.

    Examples
    --------
    >>> cfg = load_config(overrides={"features": {"windows": [7, 28]}})
    >>> cfg.features.windows
    (7, 28)
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"params file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problem = _yaml_problem(exc)
            raise ConfigError(f"params file {path} is not valid YAML: {problem}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"params file {path} cannot be read: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"params file {path} must hold a mapping of sections")
        raw = loaded or {}
    if overrides:
        raw = _merge(raw, overrides)
    config = _record_explicit_columns(
        from_jsonable(Config, raw, "params", ConfigError, strict=True), raw
    )
    _check_values(config)
    return config


#: ``timestamp_format`` values for epoch numbers, and their units in microseconds.
UNIX_TIME_UNITS = {"unix_s": 1_000_000, "unix_ms": 1_000, "unix_us": 1}


def check_timestamp_format(timestamp_format: str | None) -> None:
    """Refuse a ``data.columns.timestamp_format`` that can read no timestamp.

    The pattern's directives are checked by DuckDB when the log is read; here, only
    its shape: a ``unix_*`` unit, or a pattern with at least a year directive.

    Raises
    ------
    ConfigError
        Naming the value and what is expected.

    Examples
    --------
    >>> check_timestamp_format("%d/%m/%Y")
    >>> check_timestamp_format("dd/mm/yyyy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmentkit.errors.ConfigError: data.columns.timestamp_format: 'dd/mm/yyyy' is not ...
    """
    if timestamp_format is None or timestamp_format in UNIX_TIME_UNITS:
        return
    if not isinstance(timestamp_format, str) or not re.search(r"%-?[YyG]", timestamp_format):
        raise ConfigError(
            f"data.columns.timestamp_format: {timestamp_format!r} is not a strptime pattern with "
            f"a year (e.g. '%m/%d/%Y %H:%M', '%Y%m%d') nor one of {sorted(UNIX_TIME_UNITS)}"
        )


def check_revenue_events(columns: ColumnMap, error: type[SegmentkitError] = ConfigError) -> None:
    """Refuse ``data.columns.revenue_events`` or ``refund_events`` that cannot apply.

    Checked on ``params.yaml`` (a :class:`ConfigError` before any work) and where the
    log is read (``error``: a ``DataValidationError`` for a ``ColumnMap`` built in code).

    Examples
    --------
    >>> check_revenue_events(ColumnMap(revenue_events=("purchase", "refund")))
    >>> check_revenue_events(ColumnMap(revenue_events=()))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmentkit.errors.ConfigError: data.columns.revenue_events: expected one or more event ...
    """
    settings = {
        "revenue_events": (
            columns.revenue_events,
            "selects the rows whose revenue counts",
            "purchase",
        ),
        "refund_events": (
            columns.refund_events,
            "names the rows whose amounts are refunds",
            "refund",
        ),
    }
    for setting, (chosen, does, example) in settings.items():
        if chosen is None:
            continue
        if not chosen or not all(isinstance(name, str) and name for name in chosen):
            raise error(
                f"data.columns.{setting}: expected one or more event names (e.g. [{example}]) "
                f"or null, got {list(chosen)}"
            )
        if columns.revenue is None:
            raise error(
                f"data.columns.{setting} ({list(chosen)}) {does}, but data.columns.revenue is "
                "null: map revenue to the amount column"
            )
        if columns.event is None:
            raise error(
                f"data.columns.{setting} ({list(chosen)}) needs an event column, but "
                "data.columns.event is null (a transaction table, every row a purchase): "
                f"set {setting} to null"
            )
    if columns.refund_events is not None and columns.revenue_events is not None:
        ignored = [name for name in columns.refund_events if name not in columns.revenue_events]
        if ignored:
            raise error(
                f"data.columns.refund_events {ignored} are not in revenue_events "
                f"({list(columns.revenue_events)}): their amounts would be ignored, not "
                "subtracted; add them to revenue_events"
            )


#: CSV encodings both engines read, and their names for Spark (Java's charsets).
CSV_ENCODINGS = {"utf-8": "UTF-8", "latin-1": "ISO-8859-1", "utf-16": "UTF-16"}


def check_csv_header(columns: ColumnMap, error: type[SegmentkitError] = ConfigError) -> None:
    """Refuse a ``csv_header`` that cannot name a file's columns, or an unread ``csv_encoding``.

    Checked on ``params.yaml`` and where the log is read, as
    :func:`check_revenue_events`.

    Examples
    --------
    >>> check_csv_header(ColumnMap(csv_header=("user_id", "timestamp", "event")))
    >>> check_csv_header(ColumnMap(csv_header=("user", "event", "user")))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segmentkit.errors.ConfigError: data.columns.csv_header: names 'user' twice; ...
    """
    if columns.csv_encoding is not None and columns.csv_encoding not in CSV_ENCODINGS:
        raise error(
            f"data.columns.csv_encoding: expected one of {sorted(CSV_ENCODINGS)} or null (utf-8), "
            f"got {columns.csv_encoding!r}"
        )
    names = columns.csv_header
    if names is None:
        return
    if not names or not all(isinstance(name, str) and name.strip() for name in names):
        raise error(
            "data.columns.csv_header: expected the names of a headerless CSV's columns in "
            "order (e.g. [user_id, item_id, category_id, event, timestamp]) or null, got "
            f"{list(names)}"
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise error(
            f"data.columns.csv_header: names {', '.join(map(repr, twice))} twice; expected each "
            "column named once"
        )


def _record_explicit_columns(config: Config, raw: dict[str, Any]) -> Config:
    """Note which optional columns params.yaml names: those must exist in the log."""
    data = raw.get("data")
    given = data.get("columns") if isinstance(data, dict) else None
    if not isinstance(given, dict):
        return config
    columns = config.data.columns
    roles = {role for role in ("revenue", "session_id") if role in given}
    explicit = tuple(sorted(roles | set(columns.explicit)))
    columns = dataclasses.replace(columns, explicit=explicit)
    return dataclasses.replace(config, data=dataclasses.replace(config.data, columns=columns))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (PyYAML's own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_drift(drift: DriftConfig) -> None:
    """Refuse drift thresholds that are not numbers in range, naming the key."""

    def number(key: str, low: float, high: float = math.inf, *, open_low: bool = False) -> float:
        value = getattr(drift, key)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if open_low else value >= low) and value <= high
        if not ok:
            bound = f"{'>' if open_low else '>='} {low:g}" + (
                f" and <= {high:g}" if math.isfinite(high) else ""
            )
            raise ConfigError(f"drift.{key}: expected a number {bound}, got {value!r}")
        return float(value)

    def ordered(warn: str, drift_key: str, *, lower_is_worse: bool = False) -> None:
        a, b = getattr(drift, warn), getattr(drift, drift_key)
        if (a < b) if lower_is_worse else (a > b):
            relation = ">=" if lower_is_worse else "<="
            raise ConfigError(
                f"drift.{warn}: expected {warn} {relation} {drift_key}, got {a} and {b}"
            )

    for key in ("psi", "share_psi", "auc_drop"):
        number(f"{key}_warn", 0, open_low=True)
        number(f"{key}_drift", 0, open_low=True)
        ordered(f"{key}_warn", f"{key}_drift")
    for key in ("ari_warn", "ari_drift"):
        number(key, -1, 1)
    ordered("ari_warn", "ari_drift", lower_is_worse=True)
    for key in ("share_ratio", "value_shift"):
        number(f"{key}_warn", 1, open_low=True)
        number(f"{key}_drift", 1, open_low=True)
        ordered(f"{key}_warn", f"{key}_drift")
    for key in ("new_behaviour_warn", "new_behaviour_drift"):
        number(key, 0, 1, open_low=True)
    ordered("new_behaviour_warn", "new_behaviour_drift")
    number("new_behaviour_quantile", 0.5, 0.999)
    for key in ("value_shift_z_warn", "value_shift_z_drift"):
        number(key, 0)
    ordered("value_shift_z_warn", "value_shift_z_drift")
    number("share_min", 0, 1, open_low=True)
    number("share_gone", 0, 1)
    if drift.share_gone >= drift.share_min:
        raise ConfigError(
            f"drift.share_gone: expected share_gone < share_min, got {drift.share_gone} and "
            f"{drift.share_min}"
        )
    number("share_max_trend", 1)
    number("event_min_share", 0, 1, open_low=True)
    number("event_gone_ratio", 0, 1, open_low=True)
    number("newcomer_max_established_share", 0, 1)
    for key in ("n_bins", "new_behaviour_min_users", "nonzero_min_users", "min_baseline_users"):
        number(key, 2 if key == "n_bins" else 1)


def _check_values(config: Config) -> None:
    feats = config.features
    if not feats.windows or any(w <= 0 for w in feats.windows):
        raise ConfigError("features.windows: expected one or more positive day counts")
    if len(set(feats.windows)) != len(feats.windows):
        raise ConfigError(f"features.windows: duplicate windows in {list(feats.windows)}")
    if feats.session_gap_minutes <= 0:
        raise ConfigError("features.session_gap_minutes: expected a positive number of minutes")
    seg = config.segmentation
    if isinstance(seg.k, int) and seg.k < 2:
        raise ConfigError(f"segmentation.k: expected at least 2 segments, got {seg.k}")
    low, high = seg.k_range
    if not 2 <= low <= high:
        raise ConfigError(f"segmentation.k_range: expected 2 <= low <= high, got [{low}, {high}]")
    prop = config.propensity
    if prop.horizon_days <= 0 or prop.n_snapshots <= 0 or prop.snapshot_step_days <= 0:
        raise ConfigError(
            "propensity: horizon_days, n_snapshots and snapshot_step_days must be positive"
        )
    if not prop.candidates:
        raise ConfigError("propensity.candidates: expected at least one model family")
    if prop.selection_rows_max < 2:
        raise ConfigError(
            f"propensity.selection_rows_max: expected at least 2, got {prop.selection_rows_max}"
        )
    if prop.training_rows_max is not None and prop.training_rows_max < 1000:
        raise ConfigError(
            "propensity.training_rows_max: expected null or at least 1000 rows, "
            f"got {prop.training_rows_max}"
        )
    names = [t.name for t in prop.targets]
    for name in names:
        if not TARGET_NAME.fullmatch(name):
            raise ConfigError(
                f"propensity.targets: name {name!r} must be lowercase letters, digits, '_' or "
                "'-' (it becomes a file name in the model bundle)"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"propensity.targets: duplicate target names in {names}")
    for target in prop.targets:
        if target.horizon_days is not None and target.horizon_days <= 0:
            raise ConfigError(
                f"propensity.targets.{target.name}.horizon_days: expected a positive number of days"
            )
        if target.kind in ("event", "count") and not target.event:
            raise ConfigError(
                f"propensity.targets.{target.name}: kind {target.kind!r} needs an `event` name"
            )
    if config.spark.sample_users < 2:
        raise ConfigError(
            f"spark.sample_users: expected at least 2, got {config.spark.sample_users}"
        )
    _check_drift(config.drift)
    track = config.tracking
    if not MODEL_NAME.fullmatch(track.registered_model):
        raise ConfigError(
            f"tracking.registered_model: {track.registered_model!r} must start with a letter or "
            "digit and hold only letters, digits, '_', '-' or '.' (it names a directory)"
        )
    if track.request_timeout_s <= 0 or track.request_retries < 0 or track.store_lock_timeout_s < 0:
        raise ConfigError(
            "tracking: request_timeout_s must be positive, request_retries and "
            "store_lock_timeout_s zero or more"
        )
    check_timestamp_format(config.data.columns.timestamp_format)
    if config.data.columns.quantity is not None and config.data.columns.revenue is None:
        raise ConfigError(
            f"data.columns.quantity ({config.data.columns.quantity!r}) multiplies the unit price "
            "in data.columns.revenue, which is null: map revenue to the unit price column"
        )
    check_revenue_events(config.data.columns)
    check_csv_header(config.data.columns)
    unknown_roles = sorted(set(config.data.columns.explicit) - {"revenue", "session_id"})
    if unknown_roles:
        raise ConfigError(
            f"data.columns.explicit: expected 'revenue' and/or 'session_id', got {unknown_roles}"
        )
