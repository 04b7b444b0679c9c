"""Model bundle: everything fitted, saved safely and atomically, and scored.

A bundle is a directory::

    <path>/
      CURRENT                  name of the live version directory (replaced atomically)
      v-<timestamp>-<pid>/
        segmenter.skops        the fitted Segmenter (skops, never pickle)
        propensity-<name>.skops one fitted propensity model per target
        metadata.json          versions, params, as_of, fingerprint, feature reference, names
        MANIFEST.sha256        sha256 of every file above, checked on load

A save writes a complete new version directory first and only then swaps
``CURRENT`` with :func:`os.replace`, so an interrupted save leaves the previous
bundle loadable. Loading verifies the manifest, refuses files it does not list,
checks format and library versions, and only admits object types from an
allowlist (scikit-learn's own classes and segmentkit's estimators) before skops
builds them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import skops.io as sio
from threadpoolctl import threadpool_limits

from segmentkit.config import ColumnMap, FeatureConfig
from segmentkit.data import EventSource, load_events, to_timestamp
from segmentkit.errors import BundleError, DataValidationError
from segmentkit.features import build_features
from segmentkit.propensity import (
    CHUNK_ROWS,
    labels_from_codes,
    map_feature_chunks,
    score_propensity,
)

__all__ = [
    "FORMAT_VERSION",
    "SegmentationModel",
    "live_version",
    "load",
    "load_bundle",
    "save_bundle",
]

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.sha256"
METADATA = "metadata.json"
CURRENT = "CURRENT"
_KEEP_VERSIONS = 2
_TRUSTED_PREFIXES = ("sklearn.",)
_TRUSTED_SEGMENTKIT = {
    "segmentkit.segmentation.Segmenter",
    "segmentkit.propensity.PropensityModel",
}


@dataclass
class SegmentationModel:
    """Everything a refresh or a scoring job needs, fitted.

    Attributes
    ----------
    segmenter : Segmenter
        Fitted segmentation estimator.
    propensity : dict of str to PropensityModel
        Fitted propensity model per target name.
    feature_config : FeatureConfig
        Feature settings the models were trained with (scoring rebuilds features alike).
    columns : ColumnMap
        Column mapping of the training log (default for scoring).
    metadata : dict
        JSON-safe facts: as_of, params, versions, data fingerprint, feature reference.
    """

    segmenter: Any
    propensity: dict[str, Any]
    feature_config: FeatureConfig
    columns: ColumnMap = field(default_factory=ColumnMap)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Feature columns the segmenter expects, in order."""
        return [str(name) for name in self.segmenter.feature_names_in_]

    def score_features(self, features: pd.DataFrame, chunk_size: int = CHUNK_ROWS) -> pd.DataFrame:
        """Score a feature table: segment and every propensity column per user.

        Parameters
        ----------
        features : pandas.DataFrame
            ``user_id`` and the feature columns of :attr:`feature_names` (extra columns ignored).
        chunk_size : int
            Rows converted to a float64 matrix and scored at once, to bound memory.

        Returns
        -------
        pandas.DataFrame
            ``user_id, segment_id, segment_name`` and the propensity columns.
        """
        names = self.feature_names
        missing = [c for c in ["user_id", *names] if c not in features.columns]
        if missing:
            raise DataValidationError(
                f"feature table lacks column(s) {missing} that the model was trained on"
            )
        segmenter = self.segmenter
        segment = np.empty(len(features), dtype=np.intp)

        def assign_chunk(rows: slice, X: np.ndarray | None) -> None:
            segment[rows] = (
                segmenter.predict(features.iloc[rows][names])  # names the bad value
                if X is None
                else segmenter._assign(segmenter._transform_features(X))
            )

        # BLAS only multiplies by a handful of centroids here; its threads would keep
        # spinning after each product and take the cores from the scoring threads.
        with threadpool_limits(limits=1, user_api="blas"):
            map_feature_chunks(features, names, assign_chunk, chunk_size)
            scores = (
                score_propensity(self.propensity, features, chunk_size) if self.propensity else None
            )
        scored = pd.DataFrame(
            {
                "user_id": features["user_id"].reset_index(drop=True),
                "segment_id": segment.astype(np.int64),
                "segment_name": labels_from_codes(segmenter.segment_names_, segment),
            }
        )
        if scores is not None:
            scored = pd.concat([scored, scores.drop(columns=["user_id"])], axis=1)
        return scored

    def score(
        self,
        events: EventSource,
        as_of: dt.date | dt.datetime | str | None = None,
        columns: ColumnMap | None = None,
    ) -> pd.DataFrame:
        """Score users from an event log at ``as_of`` (default: midnight after the last event).

        Examples
        --------
        >>> model = load("models/segmentkit-demo")  # doctest: +SKIP
        >>> model.score("data/events.parquet", as_of="2025-01-01").head()  # doctest: +SKIP
        """
        from segmentkit.data import default_as_of

        cutoff = to_timestamp(as_of) if as_of is not None else None
        log = load_events(events, columns or self.columns, as_of=cutoff)
        snapshot = cutoff if cutoff is not None else default_as_of(log)
        features = build_features(log, snapshot, self.feature_config)
        return self.score_features(features)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dt.date | dt.datetime | pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_bundle(model: SegmentationModel, path: str | Path) -> Path:
    """Save ``model`` as a bundle directory at ``path``, atomically.

    Returns
    -------
    Path
        The bundle directory (``path``).
    """
    import dataclasses

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}-{os.getpid()}"
    staging = root / f".{version}.partial"
    staging.mkdir()
    try:
        files = {"segmenter.skops": model.segmenter}
        for name, estimator in model.propensity.items():
            files[f"propensity-{name}.skops"] = estimator
        for name, obj in files.items():
            sio.dump(obj, staging / name)
        metadata = {
            **model.metadata,
            "format_version": FORMAT_VERSION,
            "versions": _library_versions(),
            "feature_config": dataclasses.asdict(model.feature_config),
            "columns": dataclasses.asdict(model.columns),
            "propensity_targets": sorted(model.propensity),
            "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        (staging / METADATA).write_text(
            json.dumps(metadata, indent=2, sort_keys=True, default=_json_default), encoding="utf-8"
        )
        lines = [f"{_sha256(staging / n)}  {n}" for n in sorted([*files, METADATA])]
        (staging / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
        _fsync_dir(staging)
        staging.rename(root / version)
        pointer = root / f".{CURRENT}.{version}.tmp"
        pointer.write_text(version + "\n", encoding="utf-8")
        os.replace(pointer, root / CURRENT)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(root, keep=version)
    return root


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


def _library_versions() -> dict[str, str]:
    import duckdb
    import skops

    from segmentkit import __version__

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
    if not pointer.is_file():
        raise BundleError(f"{root} is not a segmentkit bundle: it has no {CURRENT} or {MANIFEST}")
    name = pointer.read_text(encoding="utf-8").strip()
    live = root / name
    if not name.startswith("v-") or "/" in name or not live.is_dir():
        raise BundleError(f"{root}/{CURRENT} points to {name!r}, which is not a bundle version")
    return live


def _verify_manifest(directory: Path) -> dict[str, str]:
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"bundle {directory} has no {MANIFEST}: refusing to load it")
    expected: dict[str, str] = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name:
            raise BundleError(f"bundle {directory}: malformed manifest line {line!r}")
        expected[name] = digest
    present = {p.name for p in directory.iterdir() if p.is_file()} - {MANIFEST}
    unlisted = sorted(present - set(expected))
    if unlisted:
        raise BundleError(f"bundle {directory}: file(s) {unlisted} are not in the manifest")
    for name, digest in expected.items():
        file = directory / name
        if not file.is_file():
            raise BundleError(f"bundle {directory}: {name} is missing")
        if _sha256(file) != digest:
            raise BundleError(
                f"bundle {directory}: {name} does not match its checksum "
                "(modified or truncated): refusing to load it"
            )
    return expected


def _check_versions(metadata: dict[str, Any], directory: Path) -> None:
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {directory} has format version {version}; this segmentkit reads "
            f"version {FORMAT_VERSION}"
        )
    saved = metadata.get("versions", {}).get("scikit-learn", "")
    if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise BundleError(
            f"bundle {directory} was saved with scikit-learn {saved or 'unknown'}; installed is "
            f"{sklearn.__version__}: retrain or install scikit-learn "
            f"{'.'.join(saved.split('.')[:2])}.*"
        )


def _load_skops(file: Path) -> Any:
    try:
        untrusted = sio.get_untrusted_types(file=file)
    except Exception as exc:  # skops raises several types for a damaged archive
        raise BundleError(f"{file.name} is not a readable skops file: {exc}") from None
    unknown = [
        t for t in untrusted if not (t.startswith(_TRUSTED_PREFIXES) or t in _TRUSTED_SEGMENTKIT)
    ]
    if unknown:
        raise BundleError(f"{file.name} holds object type(s) outside the allowlist: {unknown}")
    return sio.load(file, trusted=untrusted)


def load_bundle(path: str | Path) -> SegmentationModel:
    """Load a bundle directory, verifying checksums, versions and object types.

    Raises
    ------
    BundleError
        The bundle is missing, modified, truncated, from an incompatible version, or
        holds an object type outside the allowlist.
    """
    directory = _live_directory(Path(path))
    listed = _verify_manifest(directory)
    try:
        metadata = json.loads((directory / METADATA).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"bundle {directory}: unreadable {METADATA}: {exc}") from None
    _check_versions(metadata, directory)
    if "segmenter.skops" not in listed:
        raise BundleError(f"bundle {directory} has no segmenter.skops")
    segmenter = _load_skops(directory / "segmenter.skops")
    propensity = {
        name: _load_skops(directory / f"propensity-{name}.skops")
        for name in metadata.get("propensity_targets", [])
    }
    feature_config = FeatureConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in metadata["feature_config"].items()}
    )
    columns = ColumnMap(**metadata["columns"])
    return SegmentationModel(segmenter, propensity, feature_config, columns, metadata)


def load(uri: str | Path, tracking_uri: str | None = None) -> SegmentationModel:
    """Load a model from a bundle path or an MLflow URI such as ``models:/NAME@champion``.

    ``tracking_uri`` defaults to ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.

    Examples
    --------
    >>> import segmentkit
    >>> model = segmentkit.load("models:/segmentkit-demo@champion")  # doctest: +SKIP
    >>> scores = model.score("events.parquet", as_of="2025-01-01")  # doctest: +SKIP
    """
    text = str(uri)
    if "://" in text or text.startswith("models:/") or text.startswith("runs:/"):
        from segmentkit.tracking import download_bundle

        return load_bundle(download_bundle(text, tracking_uri=tracking_uri))
    return load_bundle(text)
