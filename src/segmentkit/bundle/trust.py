"""Which object types a bundle may contain, and loading skops files under that rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import skops.io as sio

from segmentkit.errors import BundleError

_TRUSTED_PREFIXES = ("sklearn.",)


_TRUSTED_SEGMENTKIT = {
    "segmentkit.models.segmentation.Segmenter",
    "segmentkit.models.propensity.PropensityModel",
}


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
