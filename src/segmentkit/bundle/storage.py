"""Model bundle: everything fitted, saved safely and atomically, and scored.

A bundle is a directory::

    <path>/
      CURRENT                  name of the live version directory (replaced atomically)
      v-<timestamp>-<pid>/
        segmenter.skops        the fitted Segmenter (skops, never pickle)
        propensity-<name>.skops one fitted propensity model per target
        metadata.json          versions, params, as_of, fingerprint, feature reference, names
        MANIFEST.sha256        sha256 of every file above, checked on load

A save writes a complete new version directory first (:func:`stage_version`) and
only then swaps ``CURRENT`` with :func:`os.replace` (:func:`activate_version`), so an
interrupted save leaves the previous bundle loadable; a publish registers the
staged version in MLflow before activating it. Loading refuses symlinks, FIFOs,
subdirectories and files the manifest does not list, verifies every checksum,
checks format and library versions, and only admits the exact classes of
:mod:`segmentkit.bundle.trust` before skops builds anything. Nothing with one value
per training user is saved (the segmenter's ``labels_`` stays in memory).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmentkit.bundle.model import SegmentationModel
from segmentkit.bundle.trust import check_segmenter, load_trusted
from segmentkit.config import TARGET_NAME, ColumnMap, Config, FeatureConfig
from segmentkit.config import _check_values as check_config_values
from segmentkit.errors import BundleError, ConfigError
from segmentkit.serialization import from_jsonable

# scikit-learn, skops and the metadata class (which pulls in the drift tests) are
# imported where they are used: a scoring job loads them in the background.

FORMAT_VERSION = 2  # 2: classes moved into subpackages (segmentkit.models.*)


MANIFEST = "MANIFEST.sha256"


METADATA = "metadata.json"


CURRENT = "CURRENT"


_KEEP_VERSIONS = 2


_VERSION_NAME = re.compile(r"v-[0-9]{8}T[0-9]{6}-[0-9]{9}-[0-9]+")


_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


#: Age after which a leftover ``.CURRENT.*.tmp`` pointer is from a crashed save.
_STALE_POINTER_S = 60


# Largest sizes read whole into memory. The manifest and the pointer are read before
# anything is verified; metadata.json holds versions, params and per-feature quantiles
# (about 150 KB for 20-odd features), not data, so these bounds are far above any
# file segmentkit writes.
_MAX_POINTER_BYTES = 256
_MAX_MANIFEST_BYTES = 1 << 20
_MAX_METADATA_BYTES = 64 << 20
# Largest model file hashed: the files segmentkit writes are well under 10 MB (trees,
# centroids and quantiles, no per-user data), and hashing reads a file whole, so a
# multi-gigabyte file listed in a rewritten manifest is refused by its size first.
_MAX_MODEL_FILE_BYTES = 1 << 30


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_bounded(path: Path, limit: int, what: str) -> str:
    """Read a small text file of a bundle, refusing one larger than ``limit`` bytes."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BundleError(
            f"{what} is larger than {limit:,} bytes: not a file segmentkit wrote, refusing "
            "to read it"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{what} is not UTF-8 text: refusing to read it") from None


def save_bundle(model: SegmentationModel, path: str | Path) -> Path:
    """Save ``model`` as a bundle directory at ``path``, atomically, and make it live.

    Returns
    -------
    Path
        The bundle directory (``path``).
    """
    root = Path(path)
    version_dir = stage_version(model, root)
    try:
        activate_version(root, version_dir)
    except BaseException:
        discard_version(root, version_dir)
        raise
    return root


def stage_version(model: SegmentationModel, path: str | Path) -> Path:
    """Write a complete version directory under ``path`` without making it live.

    ``CURRENT`` still names the previous version; :func:`activate_version` switches
    it, :func:`discard_version` removes a version that will not go live.

    Returns
    -------
    Path
        The new version directory.

    Raises
    ------
    BundleError
        A propensity target name is not a safe file name.
    """
    import skops.io as sio

    from segmentkit.bundle.metadata import without_credentials

    root = Path(path)
    bad = [name for name in model.propensity if not TARGET_NAME.fullmatch(str(name))]
    if bad:
        raise BundleError(
            f"propensity target name(s) {bad} must be lowercase letters, digits, '_' or '-'"
        )
    root.mkdir(parents=True, exist_ok=True)
    version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}-{os.getpid()}"
    staging = root / f".{version}.partial"
    staging.mkdir()
    try:
        files = {"segmenter.skops": _without_per_user_attributes(model.segmenter)}
        for name, estimator in model.propensity.items():
            files[f"propensity-{name}.skops"] = estimator
        for name, obj in files.items():
            sio.dump(obj, staging / name)
        metadata = dataclasses.replace(
            model.metadata,
            params=without_credentials(model.metadata.params),
            format_version=FORMAT_VERSION,
            versions=_library_versions(),
            feature_config=model.feature_config,
            columns=model.columns,
            propensity_targets=tuple(sorted(model.propensity)),
            saved_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            model_version=version,
        )
        (staging / METADATA).write_text(metadata.to_json(), encoding="utf-8")
        lines = [f"{_sha256(staging / n)}  {n}" for n in sorted([*files, METADATA])]
        (staging / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
        _fsync_dir(staging)
        staging.rename(root / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root / version


#: Fitted attributes holding one value per training user: needed while training,
#: never for scoring, and user-level data the bundle (logged to MLflow) must not hold.
_PER_USER_ATTRIBUTES = ("labels_",)


def _without_per_user_attributes(estimator: Any) -> Any:
    """Return a shallow copy of ``estimator`` without :data:`_PER_USER_ATTRIBUTES`."""
    present = [name for name in _PER_USER_ATTRIBUTES if name in vars(estimator)]
    if not present:
        return estimator
    saved = copy.copy(estimator)
    for name in present:
        delattr(saved, name)
    return saved


def activate_version(path: str | Path, version_dir: str | Path) -> None:
    """Make a staged version live: replace ``CURRENT`` atomically, then prune old versions."""
    root = Path(path)
    version = Path(version_dir).name
    if not _VERSION_NAME.fullmatch(version) or not (root / version).is_dir():
        raise BundleError(f"{root}: {version!r} is not a staged bundle version")
    pointer = root / f".{CURRENT}.{version}.tmp"
    try:
        pointer.write_text(version + "\n", encoding="utf-8")
        with pointer.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(pointer, root / CURRENT)
    except BaseException:
        pointer.unlink(missing_ok=True)
        raise
    _fsync_dir(root)
    _prune(root, keep=version)


def discard_version(path: str | Path, version_dir: str | Path) -> None:
    """Remove a staged version that did not go live (never the live one)."""
    root, version = Path(path), Path(version_dir)
    pointer = root / CURRENT
    live = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None
    if version.name != live and version.parent == root:
        shutil.rmtree(version, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    for item in path.iterdir():
        if item.is_file():
            with item.open("rb") as handle:
                os.fsync(handle.fileno())


def _prune(root: Path, keep: str) -> None:
    versions = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("v-"))
    old = [p for p in versions if p.name != keep][: max(0, len(versions) - _KEEP_VERSIONS)]
    for directory in old:
        shutil.rmtree(directory, ignore_errors=True)
    for leftover in root.glob(".v-*.partial"):
        if time.time() - leftover.stat().st_mtime > 3600:
            shutil.rmtree(leftover, ignore_errors=True)
    for pointer in root.glob(f".{CURRENT}.*.tmp"):
        # A pointer lives for microseconds; an old one is from a crashed save.
        with contextlib.suppress(OSError):
            if time.time() - pointer.lstat().st_mtime > _STALE_POINTER_S:
                pointer.unlink()


def _library_versions() -> dict[str, str]:
    import duckdb
    import sklearn
    import skops

    from segmentkit.version import __version__

    return {
        "segmentkit": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "duckdb": duckdb.__version__,
        "skops": skops.__version__,
    }


def live_version(path: str | Path) -> Path:
    """Return the live version directory of a bundle (the one ``CURRENT`` names)."""
    return _live_directory(Path(path))


def _live_directory(root: Path) -> Path:
    if not root.exists():
        raise BundleError(f"no model bundle at {root}")
    if (root / MANIFEST).is_file():
        return root  # a bare version directory (e.g. an MLflow artifact)
    pointer = root / CURRENT
    if pointer.is_symlink():
        raise BundleError(f"{root}/{CURRENT} is a symlink: refusing to follow it")
    if not pointer.is_file():
        raise BundleError(f"{root} is not a segmentkit bundle: it has no {CURRENT} or {MANIFEST}")
    name = _read_bounded(pointer, _MAX_POINTER_BYTES, f"{root}/{CURRENT}").strip()
    live = root / name
    if not _VERSION_NAME.fullmatch(name) or live.is_symlink() or not live.is_dir():
        raise BundleError(f"{root}/{CURRENT} points to {name!r}, which is not a bundle version")
    return live


def _verify_manifest(directory: Path) -> dict[str, str]:
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"bundle {directory} has no {MANIFEST}: refusing to load it")
    if manifest.is_symlink():
        raise BundleError(f"bundle {directory}: {MANIFEST} is a symlink: refusing to load it")
    expected: dict[str, str] = {}
    text = _read_bounded(manifest, _MAX_MANIFEST_BYTES, f"bundle {directory}: {MANIFEST}")
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if (
            not re.fullmatch(r"[0-9a-f]{64}", digest)
            or not _FILE_NAME.fullmatch(name)
            or name in expected
        ):
            raise BundleError(f"bundle {directory}: malformed manifest line {line!r}")
        expected[name] = digest
    _check_layout(directory, set(expected))
    _check_entries(directory, set(expected))
    for name, digest in expected.items():
        file = directory / name
        if not file.is_file():
            raise BundleError(f"bundle {directory}: {name} is missing")
        limit = _MAX_METADATA_BYTES if name == METADATA else _MAX_MODEL_FILE_BYTES
        if file.stat().st_size > limit:
            raise BundleError(
                f"bundle {directory}: {name} is larger than {limit:,} bytes: not a file "
                "segmentkit wrote, refusing to read it"
            )
        if _sha256(file) != digest:
            raise BundleError(
                f"bundle {directory}: {name} does not match its checksum "
                "(modified or truncated): refusing to load it"
            )
    return expected


def _check_layout(directory: Path, listed: set[str]) -> None:
    """Refuse a manifest without metadata or listing files a bundle never holds.

    A bundle holds ``metadata.json``, ``segmenter.skops`` and ``propensity-<target>.skops``
    only; anything else (a ``.pkl`` someone added and listed) is not loaded by this
    package but could be by another tool trusting the manifest.
    """
    if METADATA not in listed:
        raise BundleError(f"bundle {directory}: its manifest does not list {METADATA}")
    unexpected = sorted(
        name
        for name in listed
        if name not in (METADATA, "segmenter.skops")
        and not (
            name.startswith("propensity-")
            and name.endswith(".skops")
            and TARGET_NAME.fullmatch(name[len("propensity-") : -len(".skops")])
        )
    )
    if unexpected:
        raise BundleError(
            f"bundle {directory}: its manifest lists file(s) {unexpected} a bundle does not "
            f"hold (only {METADATA}, segmenter.skops and propensity-<target>.skops)"
        )


def _check_entries(directory: Path, listed: set[str]) -> None:
    """Refuse anything in a version directory but the manifest and the regular files it lists.

    Checked with ``lstat`` before any file is opened: a FIFO would block the
    reader and a symlink could point anywhere.
    """
    for entry in sorted(directory.iterdir()):
        mode = entry.lstat().st_mode
        if stat.S_ISLNK(mode):
            raise BundleError(f"bundle {directory}: {entry.name} is a symlink: refusing to load it")
        if stat.S_ISDIR(mode):
            raise BundleError(
                f"bundle {directory}: subdirectory {entry.name} is not in the manifest"
            )
        if not stat.S_ISREG(mode):
            raise BundleError(
                f"bundle {directory}: {entry.name} is not a regular file (a FIFO, socket or "
                "device): refusing to load it"
            )
        if entry.name != MANIFEST and entry.name not in listed:
            raise BundleError(f"bundle {directory}: file(s) {[entry.name]} are not in the manifest")


def _check_format(metadata: dict[str, Any], directory: Path) -> None:
    version = metadata.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise BundleError(
            f"bundle {directory} has format version {version!r}; this segmentkit reads "
            f"version {FORMAT_VERSION}"
        )


def _check_versions(metadata: dict[str, Any], directory: Path) -> None:
    import sklearn

    _check_format(metadata, directory)
    versions = metadata.get("versions", {})
    saved = versions.get("scikit-learn", "") if isinstance(versions, dict) else None
    if not isinstance(saved, str):
        raise BundleError(
            f"bundle {directory}: {METADATA}.versions should map library names to version "
            f"strings, got {json.dumps(versions)[:80]}"
        )
    if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise BundleError(
            f"bundle {directory} was saved with scikit-learn {saved or 'unknown'}; installed is "
            f"{sklearn.__version__}: retrain or install scikit-learn "
            f"{'.'.join(saved.split('.')[:2])}.*"
        )


@dataclass(frozen=True)
class OpenedBundle:
    """A bundle version whose files match their checksums, with its metadata read.

    What :func:`open_bundle` returns and :func:`load_opened` builds a model from.
    Opening takes milliseconds and imports neither scikit-learn nor skops, so a
    scoring job knows the log's column mapping and feature settings at once and
    builds the model in the background while it validates the log.

    Attributes
    ----------
    directory : Path
        The version directory.
    listed : dict of str to str
        File name to sha256, as in the verified manifest.
    raw : dict
        ``metadata.json``, parsed (its format version checked).
    columns : ColumnMap
        Column mapping of the training log.
    feature_config : FeatureConfig
        Feature settings the models were trained with.
    input_schema : dict
        What the training input held (see :func:`segmentkit.io.events.check_input`).
    """

    directory: Path
    listed: dict[str, str]
    raw: dict[str, Any]
    columns: ColumnMap
    feature_config: FeatureConfig
    input_schema: dict[str, Any]


def open_bundle(path: str | Path) -> OpenedBundle:
    """Find a bundle's live version, verify its files and read its metadata.

    Raises
    ------
    BundleError
        The bundle is missing, modified or truncated, its metadata is unreadable, or
        its format version is not this package's.
    """
    directory = _live_directory(Path(path))
    listed = _verify_manifest(directory)
    text = _read_bounded(
        directory / METADATA, _MAX_METADATA_BYTES, f"bundle {directory}: {METADATA}"
    )
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: malformed JSON or an integer too long to parse; RecursionError:
        # nesting deeper than the parser goes.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise BundleError(f"bundle {directory}: unreadable {METADATA}: {reason}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"bundle {directory}: {METADATA} is not a JSON object")
    _check_format(raw, directory)  # before reading fields whose layout may differ
    where = f"bundle {directory}: {METADATA}"
    if raw.get("feature_config") is None or raw.get("columns") is None:
        raise BundleError(f"{where} lacks feature_config or columns")
    schema = _checked_input_schema(raw.get("input_schema", {}), f"{where}.input_schema")
    _check_recorded_start(raw.get("data_quality", {}), f"{where}.data_quality")
    feature_config = from_jsonable(
        FeatureConfig, raw["feature_config"], f"{where}.feature_config", BundleError
    )
    _check_feature_config(feature_config, where)
    return OpenedBundle(
        directory,
        listed,
        raw,
        from_jsonable(ColumnMap, raw["columns"], f"{where}.columns", BundleError),
        feature_config,
        schema,
    )


def _checked_input_schema(schema: Any, where: str) -> dict[str, Any]:
    """Check the input schema's layout (see :func:`segmentkit.io.events.check_input`).

    ``columns`` maps roles to column names; ``key_events_seen`` and ``optional_used``
    list names; ``event_shares`` maps event names to shares of rows. Scoring reads these
    before anything else: a wrong type must fail here, naming the bundle, not as a
    TypeError while the log is checked.
    """
    if not isinstance(schema, dict):
        raise BundleError(f"{where}: expected an object, got {type(schema).__name__}")
    columns = schema.get("columns", {})
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        raise BundleError(f"{where}.columns: expected an object of role: column name")
    for key in ("key_events_seen", "optional_used"):
        names = schema.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BundleError(f"{where}.{key}: expected a list of names")
    shares = schema.get("event_shares", {})
    if not isinstance(shares, dict) or not all(
        isinstance(name, str)
        and isinstance(share, int | float)
        and not isinstance(share, bool)
        and 0.0 <= share <= 1.0
        for name, share in shares.items()
    ):
        raise BundleError(
            f"{where}.event_shares: expected an object of event name: share in [0, 1]"
        )
    return schema


def _check_recorded_start(data_quality: Any, where: str) -> None:
    """Check the training log's first event, which scoring compares the log's start with.

    Read before the log is checked: a value that is no ISO time must fail here, naming
    the bundle, not as an error about the log.
    """
    if not isinstance(data_quality, dict):
        raise BundleError(f"{where}: expected an object, got {type(data_quality).__name__}")
    first = data_quality.get("first_event")
    if first is None:
        return
    try:
        dt.datetime.fromisoformat(first)
    except (TypeError, ValueError):
        raise BundleError(
            f"{where}.first_event: expected an ISO time or null, got {str(first)[:40]!r}"
        ) from None


def _check_feature_config(feature_config: FeatureConfig, where: str) -> None:
    """Hold a bundle's feature settings to the rules ``params.yaml`` is held to.

    Scoring builds SQL from them: a negative or missing window must fail here, with
    the bundle named, not inside DuckDB.
    """
    try:
        check_config_values(Config(features=feature_config))
    except ConfigError as exc:
        raise BundleError(f"{where}: feature_config.{str(exc).removeprefix('features.')}") from None


def _check_as_of(as_of: str, where: str) -> None:
    try:
        dt.datetime.fromisoformat(as_of)
    except (TypeError, ValueError):
        raise BundleError(f"{where}.as_of: expected an ISO date, got {as_of[:40]!r}") from None


def load_bundle(path: str | Path) -> SegmentationModel:
    """Load a bundle directory, verifying checksums, versions and object types.

    Raises
    ------
    BundleError
        The bundle is missing, modified, truncated, from an incompatible version, or
        holds a type outside :data:`segmentkit.bundle.trust.TRUSTED_TYPES`.
    """
    return load_opened(open_bundle(path))


def load_opened(opened: OpenedBundle) -> SegmentationModel:
    """Build the model of an opened bundle (see :func:`load_bundle` for the checks).

    Raises
    ------
    BundleError
        As :func:`load_bundle`.
    """
    from segmentkit.bundle.metadata import BundleMetadata
    from segmentkit.models.propensity import PropensityModel

    directory, listed, raw = opened.directory, opened.listed, opened.raw
    _check_versions(raw, directory)
    metadata = from_jsonable(BundleMetadata, raw, f"bundle {directory}: {METADATA}", BundleError)
    _check_as_of(metadata.as_of, f"bundle {directory}: {METADATA}")
    if metadata.model_version and not _VERSION_NAME.fullmatch(metadata.model_version):
        raise BundleError(
            f"bundle {directory}: {METADATA}.model_version {metadata.model_version[:80]!r} is "
            "not a bundle version name"
        )
    if metadata.feature_config is None or metadata.columns is None:
        raise BundleError(f"bundle {directory}: {METADATA} lacks feature_config or columns")
    if "segmenter.skops" not in listed:
        raise BundleError(f"bundle {directory} has no segmenter.skops")
    targets = [str(name) for name in metadata.propensity_targets]
    bad = [name for name in targets if not TARGET_NAME.fullmatch(name)]
    if bad:
        raise BundleError(f"bundle {directory}: invalid propensity target name(s) {bad}")
    unlisted = [name for name in targets if f"propensity-{name}.skops" not in listed]
    if unlisted:
        raise BundleError(f"bundle {directory}: no model file for target(s) {unlisted}")
    segmenter = load_trusted(directory / "segmenter.skops")
    check_segmenter(segmenter, "segmenter.skops")
    propensity = {name: load_trusted(directory / f"propensity-{name}.skops") for name in targets}
    for name, estimator in propensity.items():
        if not isinstance(estimator, PropensityModel):
            raise BundleError(
                f"propensity-{name}.skops holds a {type(estimator).__name__}, not a PropensityModel"
            )
    feature_config = metadata.feature_config
    columns = metadata.columns
    return SegmentationModel(segmenter, propensity, feature_config, columns, metadata)
