"""Segment names and descriptions from centroid profiles relative to the population."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

_ROLES: dict[str, tuple[str, ...]] = {
    "recency": ("recency_days",),
    "frequency": ("active_days_total", "sessions_total", "events_total"),
    "monetary": ("revenue_total", "orders"),
    "tenure": ("tenure_days",),
    "trend": ("activity_trend",),
}


# Features whose lift is a difference, not a ratio (signed, centred on 0).
# Features whose lift is a difference (they can be negative), not a ratio.
DIFFERENCE_FEATURES = ("activity_trend",)


_DIFFERENCE_FEATURES = DIFFERENCE_FEATURES


_LABELS = {
    "recency_days": "days since last activity",
    "tenure_days": "tenure",
    "active_days_total": "active days",
    "sessions_total": "sessions",
    "events_total": "events",
    "revenue_total": "spend",
    "orders": "orders",
    "avg_order_value": "order value",
    "activity_trend": "activity trend",
    "median_gap_days": "days between visits",
}


# ------------------------------------------------------------------ names
def _feature_labels(model: Any) -> np.ndarray:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return np.asarray(names, dtype=object)
    return np.asarray([f"x{i}" for i in range(model.n_features_in_)], dtype=object)


def _lifts(
    means: np.ndarray,
    medians: np.ndarray,
    pop_mean: np.ndarray,
    pop_median: np.ndarray,
    features: Sequence[str],
) -> np.ndarray:
    """Segment mean / population mean; medians when the mean is 0; differences for trends."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = means / pop_mean
        by_median = np.where(pop_median != 0, medians / pop_median, np.nan)
    lifts = np.where(pop_mean != 0, ratio, by_median)
    for j, name in enumerate(features):
        if name in _DIFFERENCE_FEATURES:
            lifts[:, j] = means[:, j] - pop_mean[j]
    return lifts


def _role_index(features: Sequence[str]) -> dict[str, int]:
    index = {}
    for role, candidates in _ROLES.items():
        for name in candidates:
            if name in features:
                index[role] = list(features).index(name)
                break
    return index


def _rule_name(z: np.ndarray, features: Sequence[str]) -> str:
    """Name a segment from its standardized centroid by the documented rule set."""
    roles = _role_index(features)

    def has(*names: str) -> bool:
        return all(name in roles for name in names)

    def v(role: str) -> float:
        return float(z[roles[role]])

    if has("tenure") and v("tenure") <= -1.0:
        return "New"
    if has("recency", "frequency") and v("recency") >= 1.0 and v("frequency") <= 0.5:
        return "Hibernating"
    if has("recency") and v("recency") >= 0.4:
        return "At risk"
    if has("trend", "frequency") and v("trend") <= -0.5 and v("frequency") >= -0.3:
        return "At risk"
    if has("frequency", "monetary") and v("frequency") >= 0.8 and v("monetary") >= 0.5:
        return "Champions"
    if has("monetary") and v("monetary") >= 0.8:
        return "Big spenders"
    if has("frequency") and v("frequency") >= 0.5:
        return "Loyal"
    if has("frequency", "monetary") and v("frequency") >= 0 and v("monetary") <= -0.3:
        return "Window shoppers"
    if has("frequency") and v("frequency") < 0:
        return "Casual"
    return _strongest_label(z, features, set())


def _strongest_label(z: np.ndarray, features: Sequence[str], used: set[str]) -> str:
    for j in np.argsort(-np.abs(np.nan_to_num(z)), kind="stable"):
        label = f"{'High' if z[j] >= 0 else 'Low'} {features[j]}"
        if label not in used:
            return label
    return "Segment"


def _unique_names(
    kinds: list[str],
    inherited: dict[int, str],
    z: np.ndarray,
    features: Sequence[str],
    present: np.ndarray,
) -> list[str]:
    names: list[str] = [""] * len(kinds)
    taken: set[str] = set()
    for s, name in sorted(inherited.items()):
        names[s] = name
        taken.add(name)
    for s in range(len(kinds)):  # ids are in size order: bigger segments keep plain names
        if s in inherited:
            continue
        base = kinds[s] if present[s] else f"Segment {s}"
        name = base
        if name in taken:
            suffixes = {n[len(base) + 2 : -1].capitalize() for n in taken if n.startswith(base)}
            extra = _strongest_label(z[s], features, suffixes).lower()
            name = f"{base} ({extra})"
        n = 2
        while name in taken:
            name = f"{base} {n}"
            n += 1
        names[s] = name
        taken.add(name)
    return names


def _describe(z: np.ndarray, lifts: np.ndarray, features: Sequence[str]) -> str:
    parts = []
    for j in np.argsort(-np.abs(np.nan_to_num(z)), kind="stable")[:3]:
        parts.append(_phrase(features[j], float(lifts[j])))
    return ", ".join(parts)


def _phrase(feature: str, lift: float) -> str:
    label = _LABELS.get(feature, feature.replace("_", " "))
    if feature in _DIFFERENCE_FEATURES:
        return f"{label} {lift:+.2f} vs average"
    if math.isnan(lift):
        return f"{label} n/a"
    if lift >= 1.0:
        return f"{label} {lift:.1f}x average"
    if lift >= 0:
        return f"{label} {1.0 - lift:.0%} below average"
    return f"{label} {lift:.1f}x average"
