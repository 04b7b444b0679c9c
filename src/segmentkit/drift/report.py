"""DriftReport: every drift test of a refresh, its overall status and its exit code."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from segmentkit.config import DriftConfig
from segmentkit.drift._common import (
    _LEVEL,
    DriftResult,
    Status,
    T,
    _count,
    _from_json,
    _metric_key,
    _status_of,
    _worst,
)
from segmentkit.drift.agreement import AgreementResult, MigrationResult
from segmentkit.drift.backtest import BacktestResult
from segmentkit.drift.reference import FeatureReference
from segmentkit.drift.stats import FEATURE_TESTS, share_psi_test
from segmentkit.drift.verdict import Verdict, decide
from segmentkit.errors import (
    ConfigError,
    DataValidationError,
    InsufficientDataError,
)
from segmentkit.serialization import to_jsonable

#: Exit code of a refresh whose report status is ``DRIFT``.
DRIFT_EXIT_CODE = 3


@dataclass(frozen=True)
class DriftReport:
    """Everything the refresh compared, with one overall status.

    Attributes
    ----------
    features : tuple of DriftResult
        Per-feature results (PSI and Wasserstein), in reference order.
    share : DriftResult or None
        Segment-mix PSI.
    agreement : AgreementResult or None
        Champion vs challenger on the same users.
    migration : MigrationResult or None
        Users moving between segments (informational: no status).
    backtests : tuple of BacktestResult
        Propensity backtests of the champion.
    n_current : int or None
        Rows of the current feature table.
    checks : tuple of DriftResult
        Calibrated checks (:mod:`segmentkit.drift.verdict`): changes judged against
        what ageing alone produces, segment shares, new behaviour, events, history.
    """

    features: tuple[DriftResult, ...] = ()
    share: DriftResult | None = None
    agreement: AgreementResult | None = None
    migration: MigrationResult | None = field(default=None, compare=False)
    backtests: tuple[BacktestResult, ...] = ()
    n_current: int | None = None
    checks: tuple[DriftResult, ...] = ()

    def results(self) -> list[DriftResult]:
        """Every judged result (features, share, ARI, backtests, checks) as DriftResults."""
        out = list(self.features) + list(self.checks)
        if self.share is not None:
            out.append(self.share)
        if self.agreement is not None:
            out.append(self.agreement.result)
        out += [b.result for b in self.backtests]
        return out

    @property
    def status(self) -> Status:
        """Worst status of the parts (``OK < WARN < DRIFT``)."""
        return _worst(r.status for r in self.results())

    @property
    def verdict(self) -> Verdict:
        """Findings in words, most important first, and one recommendation."""
        return decide(self.results())

    @property
    def exit_code(self) -> int:
        """0 for OK and WARN, :data:`DRIFT_EXIT_CODE` (3) for DRIFT."""
        return DRIFT_EXIT_CODE if self.status == "DRIFT" else 0

    def feature_results(self, test: str) -> list[DriftResult]:
        """Feature results of one test (e.g. ``"psi"``)."""
        return [r for r in self.features if r.test == test]

    def metrics(self) -> dict[str, float]:
        """Flat aggregate metrics named ``drift/...`` (no user-level values).

        Names: ``drift/status`` (0 OK, 1 WARN, 2 DRIFT), ``drift/<test>/<feature>``,
        ``drift/psi_max``, ``drift/features_warn``, ``drift/features_drift``,
        ``drift/share_psi``, ``drift/ari``, ``drift/jaccard/<segment>``,
        ``drift/jaccard_min``, ``drift/segments_appeared``, ``drift/segments_vanished``,
        ``drift/centroid_shift/<segment>``, ``drift/centroid_shift_max``,
        ``drift/migration/{stayed_share,new_users,gone_users,users}``,
        ``drift/backtest/<target>/{auc,auc_drop,brier,brier_change}``.
        """
        out: dict[str, float] = {"drift/status": float(_LEVEL[self.status])}
        if self.n_current is not None:
            out["drift/n_current"] = float(self.n_current)
        for r in (*self.features, *self.checks):
            out[_metric_key(f"drift/{r.test}/{r.subject}")] = float(r.score)
        psi = self.feature_results("psi")
        if psi:
            out["drift/psi_max"] = max(float(r.score) for r in psi)
            out["drift/features_warn"] = float(sum(r.status == "WARN" for r in psi))
            out["drift/features_drift"] = float(sum(r.status == "DRIFT" for r in psi))
        if self.share is not None:
            out["drift/share_psi"] = float(self.share.score)
        if self.agreement is not None:
            a = self.agreement
            out["drift/ari"] = a.ari
            for seg, value in a.jaccard.items():
                out[_metric_key(f"drift/jaccard/{seg}")] = float(value)
            if a.jaccard:
                out["drift/jaccard_min"] = min(a.jaccard.values())
            out["drift/segments_appeared"] = float(len(a.appeared))
            out["drift/segments_vanished"] = float(len(a.vanished))
            for m in a.matches:
                if m.centroid_shift is not None:
                    out[_metric_key(f"drift/centroid_shift/{m.champion}")] = m.centroid_shift
            if a.centroid_shift_max is not None:
                out["drift/centroid_shift_max"] = a.centroid_shift_max
        if self.migration is not None:
            mig = self.migration
            if mig.stayed_share is not None:
                out["drift/migration/stayed_share"] = mig.stayed_share
            out["drift/migration/new_users"] = float(mig.n_new)
            out["drift/migration/gone_users"] = float(mig.n_gone)
            out["drift/migration/users"] = float(mig.n_users)
        for b in self.backtests:
            key = _metric_key(f"drift/backtest/{b.target}")
            out[f"{key}/auc"] = b.auc
            out[f"{key}/auc_drop"] = b.auc_drop
            out[f"{key}/brier"] = b.brier
            out[f"{key}/brier_change"] = b.brier_change
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def __post_init__(self) -> None:
        if self.n_current is not None:
            _count(self.n_current, "n_current")

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-safe values (no numpy types, None for NaN).

        Besides the fields: the overall ``status``, the ``exit_code`` and the ``verdict``.
        """
        # parts whose to_dict writes more than their fields
        custom = {
            "migration": None if self.migration is None else self.migration.to_dict(),
            "backtests": [b.to_dict() for b in self.backtests],
        }
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            **to_jsonable(replace(self, migration=None, backtests=())),
            **custom,
            "verdict": self.verdict.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        """Rebuild a report written by :meth:`to_dict`, e.g. a refresh's ``drift.json``.

        Each part is read by its own ``from_dict``, so errors name the part. The overall
        status is recomputed from the parts and must equal the stored one, so a
        hand-edited or truncated file is refused rather than misread.

        Raises
        ------
        DataValidationError
            If a key is missing, a value is malformed, or the stored status differs
            from the status of the parts.

        Examples
        --------
        >>> report = DriftReport(features=(DriftResult("psi", "x", 0.3, 0.1, 0.25, "DRIFT"),))
        >>> DriftReport.from_dict(report.to_dict()).status
        'DRIFT'
        """

        def build(d: Mapping[str, Any]) -> DriftReport:
            stored = _status_of(d["status"])
            report = cls(
                features=tuple(DriftResult.from_dict(f) for f in d["features"]),
                share=_optional_part(DriftResult, d.get("share")),
                agreement=_optional_part(AgreementResult, d.get("agreement")),
                migration=_optional_part(MigrationResult, d.get("migration")),
                backtests=tuple(BacktestResult.from_dict(b) for b in d.get("backtests") or ()),
                n_current=d.get("n_current"),
                checks=tuple(DriftResult.from_dict(r) for r in d.get("checks") or ()),
            )
            if report.status != stored:
                raise DataValidationError(
                    f"drift report: stored status {stored} differs from the status of its "
                    f"parts ({report.status})"
                )
            return report

        return _from_json("drift report", data, build)

    def to_markdown(
        self,
        names: Sequence[str] | None = None,
        challenger_names: Sequence[str] | None = None,
        *,
        champion_as_of: str = "",
        as_of: str = "",
        interval_days: int | None = None,
    ) -> str:
        """Return a readable Markdown summary of the report.

        With calibrated checks the report is in words (see
        :func:`segmentkit.drift.markdown.refresh_markdown`): segments named
        ``id · name`` from ``names``, and a closing recommendation.
        """
        if self.checks:
            from segmentkit.drift.markdown import refresh_markdown

            return refresh_markdown(
                self,
                self.verdict,
                list(names or []),
                challenger_names,
                champion_as_of=champion_as_of,
                as_of=as_of,
                checks=self.checks,
                interval_days=interval_days,
            )
        from segmentkit.drift.markdown import report_markdown

        return report_markdown(self, names, challenger_names)


def _optional_part(cls: type[T], data: Any) -> T | None:
    """Read a part of a report by its ``from_dict``; None when absent."""
    return None if data is None else cls.from_dict(data)  # type: ignore[attr-defined]


def run_drift_tests(
    reference: Mapping[str, FeatureReference],
    current_features: pd.DataFrame,
    reference_shares: Mapping[Hashable, float] | None = None,
    current_labels: Any = None,
    config: DriftConfig | None = None,
    agreement: AgreementResult | None = None,
    migration: MigrationResult | None = None,
    backtests: Sequence[BacktestResult] = (),
    *,
    tests: Sequence[str] = ("psi", "wasserstein"),
) -> DriftReport:
    """Run the registered feature tests and the segment-mix test, and gather a report.

    Parameters
    ----------
    reference : mapping of str to FeatureReference
        What the champion stored at training (see :func:`build_feature_reference`).
    current_features : pandas.DataFrame
        Feature table of the new snapshot; must hold every reference feature.
    reference_shares : mapping of segment to float, optional
        Segment shares at training.
    current_labels : array-like, optional
        Champion's segment of each current user (needed with ``reference_shares``).
    config : DriftConfig, optional
        Thresholds (defaults: ``DriftConfig()``).
    agreement : AgreementResult, optional
        From :func:`segment_agreement`; re-judged with ``config.ari_warn/ari_drift``.
    migration : MigrationResult, optional
        From :func:`migration_matrix`.
    backtests : sequence of BacktestResult
        From :func:`propensity_backtest`.
    tests : sequence of str, default ("psi", "wasserstein")
        Names in :data:`FEATURE_TESTS` to run on every feature.

    Returns
    -------
    DriftReport

    Raises
    ------
    ConfigError
        If a test name is unknown or thresholds are inconsistent.
    DataValidationError
        If a reference feature is missing from ``current_features``, or only one of
        ``reference_shares`` and ``current_labels`` is given.
    InsufficientDataError
        If ``current_features`` has no rows.
    """
    config = config or DriftConfig()
    unknown = [t for t in tests if t not in FEATURE_TESTS]
    if unknown:
        raise ConfigError(f"unknown drift test(s) {unknown}; known: {sorted(FEATURE_TESTS)}")
    if not isinstance(current_features, pd.DataFrame):
        raise DataValidationError("current_features must be a pandas DataFrame")
    if len(current_features) == 0:
        raise InsufficientDataError("the current feature table is empty: nothing to test")
    missing = [name for name in reference if name not in current_features.columns]
    if missing:
        raise DataValidationError(
            f"reference feature(s) {missing} missing from the current feature table "
            f"(columns: {[str(c) for c in current_features.columns]})"
        )
    if (reference_shares is None) != (current_labels is None):
        raise DataValidationError("reference_shares and current_labels must be given together")

    results: list[DriftResult] = []
    for name, ref in reference.items():
        column = current_features[name]
        if not (pd.api.types.is_numeric_dtype(column) or column.isna().all()):
            raise DataValidationError(f"feature {name!r} is not numeric in the current table")
        values = column.to_numpy(dtype=float, na_value=np.nan)
        for test_name in tests:
            stat = FEATURE_TESTS[test_name]
            warn, drift = stat.thresholds(config)
            results.append(stat.func(ref, values, warn, drift))

    share = None
    if reference_shares is not None:
        share = share_psi_test(
            reference_shares, current_labels, config.share_psi_warn, config.share_psi_drift
        )
    if agreement is not None:
        agreement = agreement.with_thresholds(config.ari_warn, config.ari_drift)
    return DriftReport(
        features=tuple(results),
        share=share,
        agreement=agreement,
        migration=migration,
        backtests=tuple(backtests),
        n_current=len(current_features),
    )
