"""Status arithmetic and input checks shared by the drift tests."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd

from segmentkit.errors import (
    ConfigError,
    DataValidationError,
    InsufficientDataError,
)
from segmentkit.serialization import from_jsonable, to_jsonable
from segmentkit.text import inert_text, natural_key

Status = Literal["OK", "WARN", "DRIFT"]

T = TypeVar("T")


_LEVEL: dict[str, int] = {"OK": 0, "WARN": 1, "DRIFT": 2}


def _worst(statuses: Iterable[str]) -> Status:
    worst: Status = "OK"
    for status in statuses:
        if _LEVEL[status] > _LEVEL[worst]:
            worst = status  # type: ignore[assignment]
    return worst


def _check_thresholds(
    warn: float | None, drift: float | None, what: str, *, higher_is_worse: bool = True
) -> None:
    for name, value in (("warn", warn), ("drift", drift)):
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{what}: {name} threshold must be a finite number, got {value!r}")
    if warn is None or drift is None:
        return
    if higher_is_worse and warn > drift:
        raise ConfigError(f"{what}: expected warn <= drift, got warn={warn}, drift={drift}")
    if not higher_is_worse and warn < drift:
        raise ConfigError(f"{what}: expected warn >= drift, got warn={warn}, drift={drift}")


def _judge(
    score: float, warn: float | None, drift: float | None, *, higher_is_worse: bool = True
) -> Status:
    """Status of ``score``: ``>= threshold`` when larger is worse, ``< threshold`` otherwise."""

    def crossed(threshold: float | None) -> bool:
        if threshold is None:
            return False
        return score >= threshold if higher_is_worse else score < threshold

    if crossed(drift):
        return "DRIFT"
    if crossed(warn):
        return "WARN"
    return "OK"


def _judged_result(
    test: str,
    subject: str,
    score: float,
    warn: float | None,
    drift: float | None,
    details: dict[str, Any],
) -> DriftResult:
    """Return the result of a test whose larger scores are worse, judged against its thresholds."""
    status = _judge(score, warn, drift)
    return DriftResult(test, subject, score, warn, drift, status, details)


def _finite_values(values: Any, subject: str) -> tuple[np.ndarray, int]:
    """Values as floats without NaN or infinities, and how many were dropped."""
    try:
        array = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise DataValidationError(f"feature {subject!r}: current values are not numeric") from None
    finite = np.isfinite(array)
    kept = array[finite]
    if kept.size == 0:
        raise InsufficientDataError(
            f"feature {subject!r}: no finite current values (got {array.size} values)"
        )
    return kept, int(array.size - kept.size)


def _label_codes(labels: Any, what: str) -> tuple[np.ndarray, list[str]]:
    """Codes into a list of distinct labels as strings (``1`` and ``"1"`` are one label)."""
    codes, uniques = pd.factorize(np.asarray(labels, dtype=object).ravel(), use_na_sentinel=True)
    if (codes < 0).any():
        raise DataValidationError(f"{what}: {int((codes < 0).sum())} missing segment labels")
    names = sorted({str(u) for u in uniques}, key=natural_key)
    position = {name: i for i, name in enumerate(names)}
    remap = np.array([position[str(u)] for u in uniques], dtype=np.int64)
    return remap[codes], names


def _metric_key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", text)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


#: Markdown characters that start a link or an image (``[x](url)``, ``![x](url)``),
#: and a backslash that would escape the punctuation after it: escaped in text from
#: the log (a backslash before a space or a letter stays as it is, readable).
_MD_SPECIAL = re.compile(r"([\[\]]|\\(?=[!-/:-@\[-`{-~]))")


def _md_text(value: Any) -> str:
    r"""Text of the log (event names, segment names) made inert in Markdown.

    drift.md is logged to MLflow and opened in viewers that render HTML inside
    Markdown: ``<``, ``>`` and ``&`` become entities, a line break a space,
    brackets and backslashes are escaped (no link or image can be formed, so no
    viewer fetches anything), and direction controls are shown as code points. A
    code span (text between backticks) shows its content as it is; a backtick
    inside it would end it early, so it becomes a quote.

    Examples
    --------
    >>> _md_text("event <script>x</script> & co")
    'event &lt;script&gt;x&lt;/script&gt; &amp; co'
    >>> print(_md_text("![x](https://example.com/p.png)"))
    !\[x\](https://example.com/p.png)
    >>> print(_md_text("`a`b<c>`"))
    `a'b<c>`
    """
    text = " ".join(inert_text(value).splitlines())
    if len(text) >= 2 and text.startswith("`") and text.endswith("`"):
        return "`" + text[1:-1].replace("`", "'") + "`"
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return _md_text(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _count(value: Any, name: str = "count") -> int:
    """Check a count of users or rows: a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def _status_of(value: Any) -> Status:
    if value not in _LEVEL:
        raise ValueError(f"unknown status {value!r}; expected one of {list(_LEVEL)}")
    return value


def _from_json(what: str, data: Any, build: Callable[[Mapping[str, Any]], T]) -> T:
    """Run ``build(data)``; turn a missing key or a bad value into a DataValidationError."""
    if not isinstance(data, Mapping):
        raise DataValidationError(f"{what}: expected a JSON object, got {type(data).__name__}")
    try:
        return build(data)
    except DataValidationError:
        raise
    except KeyError as exc:
        raise DataValidationError(f"{what}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataValidationError(f"{what} is malformed: {exc}") from None


def _read_result(cls: type[T], data: Any, what: str) -> T:
    """Read a result dataclass written by ``to_dict`` (:func:`from_jsonable`).

    An unknown status is named as such before the fields are read.
    """

    def build(d: Mapping[str, Any]) -> T:
        if "status" in d:
            _status_of(d["status"])
        return from_jsonable(cls, d, what)

    return _from_json(what, data, build)


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one drift test.

    Attributes
    ----------
    test : str
        Test name, e.g. ``"psi"``, ``"wasserstein"``, ``"share_psi"``, ``"ari"``.
    subject : str
        What was tested: a feature name, ``"segments"``, a target name.
    score : float
        The test statistic.
    warn_threshold, drift_threshold : float or None
        Thresholds the score was judged against (None: not judged).
    status : {"OK", "WARN", "DRIFT"}
        Verdict.
    details : dict
        JSON-safe extras (sample sizes, per-bin or per-segment proportions, ...).
    """

    test: str
    subject: str
    score: float
    warn_threshold: float | None
    drift_threshold: float | None
    status: Status
    details: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def drifted(self) -> bool:
        """Whether the status is ``DRIFT``."""
        return self.status == "DRIFT"

    @property
    def judged(self) -> bool:
        """Whether the score was judged against a threshold (else only reported)."""
        return (self.warn_threshold, self.drift_threshold) != (None, None)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        """Rebuild a result written by :meth:`to_dict` (a None score reads back as NaN).

        Raises
        ------
        DataValidationError
            If a key is missing or a value is malformed.
        """
        subject = data.get("subject", "?") if isinstance(data, Mapping) else "?"
        return _read_result(cls, data, f"drift result {subject!r}")
