"""Model bundles: the fitted model, its files on disk, and which object types may load.

:mod:`~segmentkit.bundle.model` holds :class:`SegmentationModel`;
:mod:`~segmentkit.bundle.storage` saves and loads bundle directories (atomic,
checksummed); :mod:`~segmentkit.bundle.trust` decides which object types a skops file
may contain.
"""

from segmentkit.bundle.model import SegmentationModel
from segmentkit.bundle.storage import FORMAT_VERSION, live_version, load_bundle, save_bundle

__all__ = ["FORMAT_VERSION", "SegmentationModel", "live_version", "load_bundle", "save_bundle"]
