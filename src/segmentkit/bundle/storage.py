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

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import skops.io as sio

from segmentkit.bundle.metadata import BundleMetadata
from segmentkit.bundle.model import SegmentationModel
from segmentkit.bundle.trust import _load_skops
from segmentkit.errors import BundleError
from segmentkit.serialization import from_jsonable

FORMAT_VERSION = 2  # 2: classes moved into subpackages (segmentkit.models.*)


MANIFEST = "MANIFEST.sha256"


METADATA = "metadata.json"


CURRENT = "CURRENT"


_KEEP_VERSIONS = 2


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(model: SegmentationModel, path: str | Path) -> Path:
    """Save ``model`` as a bundle directory at ``path``, atomically.

    Returns
    -------
    Path
        The bundle directory (``path``).
    """
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
        metadata = dataclasses.replace(
            model.metadata,
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
        raw = json.loads((directory / METADATA).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"bundle {directory}: unreadable {METADATA}: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"bundle {directory}: {METADATA} is not a JSON object")
    _check_versions(raw, directory)  # before reading fields whose layout may differ
    metadata = from_jsonable(BundleMetadata, raw, f"bundle {directory}: {METADATA}", BundleError)
    if metadata.feature_config is None or metadata.columns is None:
        raise BundleError(f"bundle {directory}: {METADATA} lacks feature_config or columns")
    if "segmenter.skops" not in listed:
        raise BundleError(f"bundle {directory} has no segmenter.skops")
    segmenter = _load_skops(directory / "segmenter.skops")
    propensity = {
        name: _load_skops(directory / f"propensity-{name}.skops")
        for name in metadata.propensity_targets
    }
    feature_config = metadata.feature_config
    columns = metadata.columns
    return SegmentationModel(segmenter, propensity, feature_config, columns, metadata)
