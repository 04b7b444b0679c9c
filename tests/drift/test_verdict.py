"""Calibrated drift checks and the verdict: small hand-made fixtures, one behaviour per test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentkit.drift import DriftResult, build_feature_reference
from segmentkit.drift.verdict import (
    aged_psi_test,
    decide,
    event_mix_tests,
    history_test,
    new_behaviour_test,
    newcomer_attribution,
    nonzero_psi_test,
    nonzero_shift_test,
    segment_label,
    segment_share_tests,
)
from segmentkit.errors import ConfigError
from segmentkit.models.segmentation import Segmenter

RNG = np.random.default_rng(42)


def _ref(values, name="x"):
    return build_feature_reference(pd.DataFrame({name: values}))[name]


def test_ageing_alone_is_not_drift_but_a_change_beyond_it_is():
    tenure = RNG.uniform(0, 200, 8000)
    ref = _ref(tenure, "tenure_days")
    # The calendar moved 30 days, as it did in the interval before: expected.
    aged = aged_psi_test(ref, tenure + 30, baseline_values=tenure - 30)
    assert aged.details["raw_psi"] > 0.25
    assert aged.status == "OK"
    # Without a baseline the raw PSI is all there is.
    assert aged_psi_test(ref, tenure + 30).status == "DRIFT"
    # Three times the usual ageing in one interval is not ageing alone.
    assert aged_psi_test(ref, tenure + 90, baseline_values=tenure - 30).status == "DRIFT"


def test_aged_psi_thresholds_are_checked():
    ref = _ref(RNG.normal(size=500))
    with pytest.raises(ConfigError, match="warn <= drift"):
        aged_psi_test(ref, RNG.normal(size=500), None, warn=0.3, drift=0.1)


def _spend(n, share_buyers=0.25, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    buyers = rng.random(n) < share_buyers
    return np.where(buyers, scale * rng.lognormal(3.0, 0.8, n), 0.0)


def test_spend_halving_among_buyers_is_caught_where_population_psi_is_diluted():
    then, base = _spend(6000, seed=1), _spend(6000, seed=2)
    now = _spend(6000, scale=0.5, seed=3)
    shift = nonzero_shift_test("revenue_30d", then, now, base)
    assert shift.status == "DRIFT"
    assert shift.details["ratio"] == pytest.approx(0.5, rel=0.1)
    assert nonzero_psi_test("revenue_30d", then, now, base).status == "DRIFT"
    same = _spend(6000, seed=4)
    assert nonzero_shift_test("revenue_30d", then, same, base).status == "OK"
    assert nonzero_psi_test("revenue_30d", then, same, base).status == "OK"


def test_nonzero_tests_skip_features_that_are_not_zero_inflated_or_are_signed():
    dense = RNG.lognormal(size=2000)
    assert nonzero_shift_test("events_total", dense, dense) is None
    assert nonzero_psi_test("events_total", dense, dense) is None
    signed = np.where(RNG.random(2000) < 0.5, 0.0, RNG.normal(size=2000))
    assert nonzero_shift_test("activity_trend", signed, signed) is None


def test_a_steady_trend_in_the_previous_interval_is_allowed_to_continue():
    # Orders of buyers grow by 20 % per interval: continuing is ageing, stalling is not.
    base = _spend(8000, seed=5)
    then = _spend(8000, scale=1.2, seed=6)
    assert nonzero_shift_test("orders", then, _spend(8000, scale=1.44, seed=7), base).status == "OK"
    assert (
        nonzero_shift_test("orders", then, _spend(8000, scale=0.6, seed=8), base).status == "DRIFT"
    )


def test_history_rewritten_before_the_champion_is_flagged():
    x = RNG.lognormal(size=3000)
    ref = _ref(x, "events_total")
    assert history_test(ref, x).score == pytest.approx(0.0)
    assert history_test(ref, x[x > np.median(x)]).status == "DRIFT"


def test_segment_labels_name_segments():
    assert segment_label(1, ["Casual", "Champions"]) == "1 · Champions"
    assert segment_label("0", {"0": "Casual"}) == "0 · Casual"
    assert segment_label(5, ["Casual"]) == "5"


def _labels(shares, n=10_000):
    counts = np.round(np.asarray(shares) * n).astype(int)
    return np.repeat(np.arange(len(shares)), counts)


def test_a_noisy_trend_on_a_small_log_is_applied_with_its_error():
    # 600 users: the lapsed segment grew 0.16 -> 0.20 in the previous interval (a log
    # ratio of 0.22, under two of its standard errors of 0.12). Dropping it as noise
    # expected 0.20 now and warned on 0.30; with the trend 0.25 is expected: no warning.
    then, base = _labels([0.5, 0.3, 0.2], 600), _labels([0.54, 0.3, 0.16], 600)
    steady = segment_share_tests(
        [0.5, 0.3, 0.2], _labels([0.42, 0.28, 0.30], 600), then_labels=then, baseline_labels=base
    )
    assert steady[2].details["trend"] == pytest.approx(1.25)
    assert [r.status for r in steady] == ["OK", "OK", "OK"]
    # A move far beyond the trend and its error still warns on the same small log.
    moved = segment_share_tests(
        [0.5, 0.3, 0.2], _labels([0.30, 0.25, 0.45], 600), then_labels=then, baseline_labels=base
    )
    assert moved[2].status in ("WARN", "DRIFT") and moved[2].details["change"] == "grew"


def test_a_vanished_segment_is_drift_and_named():
    names = ["Casual", "Hibernating", "Champions"]
    results = segment_share_tests([0.5, 0.3, 0.2], _labels([0.62, 0.378, 0.002]), names)
    champions = results[2]
    assert champions.subject == "2 · Champions"
    assert champions.details["change"] == "vanished"
    assert champions.status == "DRIFT"
    assert np.isfinite(champions.score)


def test_an_appearing_segment_is_drift_and_named():
    results = segment_share_tests([0.6, 0.4, 0.0], _labels([0.5, 0.35, 0.15]), ["A", "B", "C"])
    assert [r.details["change"] for r in results] == ["steady", "steady", "appeared"]
    assert results[2].status == "DRIFT"


def test_segment_shares_follow_their_ageing_trend():
    # Hibernating grew 0.20 -> 0.30 in the previous interval; 0.45 now is that trend.
    then = _labels([0.5, 0.3, 0.2])
    base = _labels([0.6, 0.2, 0.2])
    now = _labels([0.35, 0.45, 0.2])
    trended = segment_share_tests([0.5, 0.3, 0.2], now, then_labels=then, baseline_labels=base)
    assert all(r.status == "OK" for r in trended)
    flat = segment_share_tests(
        [0.5, 0.3, 0.2], _labels([0.2, 0.6, 0.2]), then_labels=then, baseline_labels=base
    )
    assert flat[0].status == "DRIFT" and flat[0].details["change"] == "shrank"


def test_segment_share_settings_are_checked():
    with pytest.raises(ConfigError, match="gone_share"):
        segment_share_tests([1.0], np.zeros(10, int), gone_share=0.1, min_share=0.05)
    with pytest.raises(ConfigError, match="warn_ratio"):
        segment_share_tests([1.0], np.zeros(10, int), warn_ratio=3.0, drift_ratio=2.0)


def test_events_that_stop_or_start_being_logged():
    then = {"page_view": 9000, "add_to_cart": 800, "purchase": 200}
    results = event_mix_tests(then, {"page_view": 9100, "purchase": 190, "wishlist": 400})
    assert [(r.test, r.subject, r.status) for r in results] == [
        ("event_vanished", "add_to_cart", "DRIFT"),
        ("event_appeared", "wishlist", "WARN"),
    ]
    assert event_mix_tests(then, then) == []
    assert event_mix_tests({}, then) == []


def _blobs(centers, n, seed):
    rng = np.random.default_rng(seed)
    rows = [rng.normal(c, 0.3, size=(n, 2)) for c in centers]
    return pd.DataFrame(np.vstack(rows), columns=["a", "b"])


def test_newcomers_no_segment_describes_are_a_new_behaviour_group():
    then = _blobs([(0, 0), (4, 0)], 400, seed=1)
    segmenter = Segmenter(k=2, n_bootstrap=0, log_features=False, random_state=0).fit(then)
    names = list(segmenter.segment_names_)
    newcomers_then = _blobs([(0, 0), (4, 0)], 60, seed=2)
    same = new_behaviour_test(
        segmenter, then, newcomers_then, _blobs([(0, 0), (4, 0)], 60, seed=3), names
    )
    assert same.status == "OK"
    group = pd.concat([_blobs([(0, 0), (4, 0)], 60, seed=3), _blobs([(2, 6)], 60, seed=4)])
    new = new_behaviour_test(segmenter, then, newcomers_then, group, names)
    assert new.status == "DRIFT"
    assert new.details["misfits_now"] >= 50
    assert "·" in new.details["nearest_segment"]
    # Without newcomers before the champion there is no baseline: reported, not judged.
    alone = new_behaviour_test(segmenter, then, newcomers_then.iloc[:5], group, names)
    assert alone.status == "OK" and alone.details["judged"] is False


def _result(test, subject, status, **details):
    return DriftResult(test, subject, 1.0, 0.1, 0.25, status, details)


def _share(change, reference_share, current_share):
    """A DRIFT share result of segment 2 (Champions), steady before."""
    return _result(
        "segment_share",
        "2 · Champions",
        "DRIFT",
        change=change,
        reference_share=reference_share,
        expected_share=reference_share,
        current_share=current_share,
        segment="2",
        trend=1.0,
    )


def test_verdict_names_the_most_important_reason_and_recommends_one_action():
    share = _share("vanished", 0.2, 0.0)
    psi = _result(
        "aged_psi",
        "tenure_days",
        "WARN",
        raw_psi=0.3,
        expected_psi=0.1,
        reference_median=10.0,
        current_median=20.0,
        n=10,
    )
    verdict = decide([psi, share])
    assert verdict.status == "DRIFT"
    assert [f.kind for f in verdict.findings] == ["segment_vanished", "aged_psi"]
    assert verdict.action == "promote"
    assert verdict.recommendation.startswith("Promote the challenger")
    assert "2 · Champions vanished" in verdict.recommendation


def test_a_rewritten_history_sends_people_to_the_source_first():
    share = _share("shrank", 0.2, 0.05)
    history = _result("history", "events_total", "DRIFT", n=10, reference_n=10)
    verdict = decide([share, history])
    assert verdict.findings[0].kind == "segment_share"
    assert verdict.action == "check_source"
    assert "events_total" in verdict.recommendation


def test_a_log_starting_after_the_champions_is_named_as_the_cause():
    share = _share("grew", 0.05, 0.2)
    starts = {
        "log_first_event": "1997-07-01T00:00:00",
        "champion_first_event": "1997-01-01T00:00:00",
    }
    history = _result("history", "tenure_days", "DRIFT", n=10, reference_n=10, **starts)
    verdict = decide([share, history])
    assert verdict.action == "check_source"
    assert verdict.recommendation.startswith(
        "Check the source of the log: it now starts on 1997-07-01, the champion's training "
        "log on 1997-01-01, so its oldest events are missing (as in a rolling export) and its "
        "history before the champion's snapshot changed (tenure_days). Refresh on a log "
        "reaching back to 1997-01-01, or train a new champion on this one. Also: "
    )
    (finding,) = [f for f in verdict.findings if f.kind == "history"]
    assert finding.message.endswith(
        "(the log now starts on 1997-07-01, the champion's training log on 1997-01-01: its "
        "oldest events are missing, as in a rolling export)"
    )


def test_warnings_only_mean_no_action_and_nothing_means_ok():
    warn = _result("event_appeared", "wishlist", "WARN", share_now=0.02)
    verdict = decide([warn])
    assert (verdict.status, verdict.action) == ("WARN", "no_action")
    assert verdict.recommendation.startswith("No action needed now")
    ok = decide([DriftResult("aged_psi", "x", 0.0, 0.1, 0.25, "OK")])
    assert (ok.status, ok.action, ok.findings) == ("OK", "no_action", ())
    assert ok.recommendation.startswith("No action")


def _shift(subject, status, ratio):
    details = dict(
        ratio=ratio,
        expected_ratio=1.0,
        standard_error=0.01,
        geometric_mean_then=10.0,
        geometric_mean_now=10.0 * ratio,
        n_then=500,
        n_now=500,
    )
    score = abs(np.log(ratio))
    return DriftResult("nonzero_shift", subject, score, np.log(1.25), np.log(1.5), status, details)


def test_a_change_only_newcomers_carry_is_a_new_behaviour_not_a_source_problem():
    everyone = _shift("events_30d", "DRIFT", 1.9)
    already_there = _shift("events_30d", "OK", 1.02)
    carried = newcomer_attribution(everyone, already_there)
    assert carried.status == "DRIFT"
    assert carried.details["carried_by"] == "newcomers"
    assert carried.details["established"]["ratio"] == pytest.approx(1.02)
    verdict = decide([carried])
    assert [(f.kind, f.subject) for f in verdict.findings] == [("new_behaviour", "events_30d")]
    assert verdict.action == "retrain"
    assert verdict.recommendation.startswith("Retrain")
    assert "1.90x" in verdict.recommendation and "1.02x" in verdict.recommendation
    assert verdict.recommendation.endswith("check how their events are logged.")


def test_a_change_the_users_already_there_show_too_stays_a_source_problem():
    everyone = _shift("revenue_30d", "DRIFT", 0.5)
    for established in (_shift("revenue_30d", "DRIFT", 0.5), None):
        kept = newcomer_attribution(everyone, established)
        assert "carried_by" not in kept.details
        verdict = decide([kept])
        assert (verdict.findings[0].kind, verdict.action) == ("nonzero_shift", "check_source")
    # OK just under the threshold on fewer users is no evidence those users did not change.
    almost = DriftResult("nonzero_psi", "revenue_30d", 0.095, 0.1, 0.25, "OK", {})
    fired = DriftResult("nonzero_psi", "revenue_30d", 0.118, 0.1, 0.25, "WARN", {})
    assert "carried_by" not in newcomer_attribution(fired, almost).details
    assert newcomer_attribution(fired, almost, max_share=0.9).details["carried_by"] == "newcomers"
    with pytest.raises(ConfigError, match="max_share"):
        newcomer_attribution(fired, almost, max_share=1.5)
    # Nothing to attribute when nothing fired.
    quiet = _shift("revenue_30d", "OK", 1.0)
    assert newcomer_attribution(quiet, _shift("revenue_30d", "OK", 1.0)) is quiet


def test_the_new_group_itself_is_named_before_the_changes_it_carries():
    group = _result(
        "new_behaviour",
        "newcomers",
        "DRIFT",
        misfits_now=90,
        newcomers_now=600,
        misfit_share_now=0.15,
        misfit_share_then=0.02,
        nearest_segment="1 · Champions",
    )
    carried = newcomer_attribution(
        _shift("events_30d", "DRIFT", 1.9), _shift("events_30d", "OK", 1.0)
    )
    verdict = decide([carried, group])
    assert [f.subject for f in verdict.findings] == ["newcomers", "events_30d"]


def test_attribution_refuses_results_of_different_tests():
    from segmentkit.errors import DataValidationError

    with pytest.raises(DataValidationError, match="does not match"):
        newcomer_attribution(_shift("events_30d", "DRIFT", 1.9), _shift("orders", "OK", 1.0))


def test_the_report_marks_changes_carried_by_newcomers():
    from segmentkit.drift import DriftReport

    carried = newcomer_attribution(
        _shift("events_30d", "DRIFT", 1.9), _shift("events_30d", "OK", 1.0)
    )
    source = _shift("revenue_30d", "DRIFT", 0.5)
    text = DriftReport(checks=(carried, source)).to_markdown(["A"])
    rows = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")
    }
    assert rows["`events_30d`"].rstrip(" |").endswith("DRIFT (newcomers)")
    assert rows["`revenue_30d`"].rstrip(" |").endswith("DRIFT")
    assert "users already there moved within ageing" in text
    # Both are findings; new behaviour ranks first (the order of decide), then the source.
    kinds = [f.kind for f in decide([carried, source]).findings]
    assert kinds == ["new_behaviour", "nonzero_shift"]
    assert text.rstrip().splitlines()[-1].startswith("**Recommendation:** Retrain")


def test_event_names_from_the_log_are_inert_in_the_markdown_report():
    from segmentkit.drift import DriftReport
    from segmentkit.drift.markdown import refresh_markdown

    hostile = "<img src=x onerror=alert(1)>"
    results = event_mix_tests({"view": 900, hostile: 100}, {"view": 1000})
    text = refresh_markdown(DriftReport(), decide(results), ["a"], checks=results)
    # In the findings and the recommendation: HTML entities, shown as the name.
    assert "event &lt;img src=x onerror=alert(1)&gt; disappeared" in text
    assert "**Recommendation:** Check the source of event &lt;img" in text
    # Raw only inside a code span (the events table), which viewers show as text.
    assert text.count(hostile) == text.count(f"`{hostile}`") == 1
