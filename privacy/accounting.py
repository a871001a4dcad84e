"""The privacy ledger: every release about a dataset, composed by a real accountant.

A dataset's budget is spent by *mechanisms*, each stored as a plain JSON record (typed as
``privacy.records.MechanismRecord``, a discriminated union on ``"mechanism"``):

=========================  =====================================================
``subsampled_gaussian``    one DP-SGD run: ``noise_multiplier``, ``sample_rate``, ``steps``
``gaussian``               a Gaussian release: ``sigma``, ``sensitivity``, ``count``
``laplace``                a Laplace release: ``scale``, ``sensitivity``, ``count``
=========================  =====================================================

The spent epsilon is the *composition* of all of them, never a sum of per-release
epsilons: under RDP, k runs cost roughly sqrt(k) times one run, so the same budget
sells more runs at the same guarantee (``bench/runs_per_budget.py``).

Neighbouring relation: add/remove one row, the relation of Opacus's analysis.

Accountants:

``rdp`` (default)
    Opacus's RDP analysis (Mironov et al. 2019) for the subsampled Gaussian, the
    closed form ``alpha / (2 z^2)`` for the Gaussian and Mironov (2017), Proposition 6
    for Laplace, summed per order and converted with Balle et al. (2020), Theorem 21
    (Opacus's ``get_privacy_spent``).
``prv``
    Numerical composition of privacy loss random variables (Gopi et al. 2021) with
    Opacus's PRV building blocks, plus a Laplace PRV Opacus lacks: tighter than RDP,
    one FFT convolution per distinct record, but seconds per answer on long histories.
``pld``
    Google's ``dp-accounting`` privacy-loss distributions. Optional: it is imported
    only when selected and raises ``AccountingError`` when the package is absent.

Identical records are merged (same parameters: steps or counts add), and per-record
RDP curves are cached, so a ledger of 10,000 releases answers in milliseconds.

Kept incrementally. RDP composes by adding curves, order by order, so a caller may keep a
history's composed curve (``rdp_curve_of`` of each release, summed) and hand it to
``PrivacyLedger(rdp=...)``: a question then costs the new plan's curve and one conversion,
whatever the history's length. ``curve_to_json``/``curve_from_json`` store a curve as JSON
(NaN, Opacus's overflowed orders, as null) tagged with ``RDP_ORDERS_DIGEST``, so a curve
kept at other orders is recognised and recomputed rather than misread. The PRV and PLD
accountants compose distributions, not curves: what they need kept is the merged records
(``merge_records``), whose length is the number of *distinct* mechanisms.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterable, Mapping

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as opacus_rdp

from privacy.errors import AccountingError, BudgetExceeded
from privacy.records import (
    MECHANISM_FIELDS,
    GaussianRecord,
    LaplaceRecord,
    MechanismRecord,
    SubsampledGaussianRecord,
    record_count,
    with_count,
)

ACCOUNTANTS = ("rdp", "prv", "pld")

#: RDP orders: Opacus's defaults (1.1 to 63) extended to 4096. Without the large orders
#: no mechanism can be shown to cost less than about 0.2 at delta 1e-5 (the conversion
#: adds log(1/delta)/(alpha-1)), which would make small budgets unsellable. Opacus's
#: subsampled-Gaussian formula overflows past order 1024; those entries are NaN and the
#: conversion ignores them. Compare with Opacus's own accountant by passing
#: ``alphas=RDP_ORDERS`` to ``get_epsilon``.
_LARGE_ORDERS = (64, 80, 96, 128, 192, 256, 512, 1024, 2048, 4096)
RDP_ORDERS: tuple[float, ...] = tuple(
    [float(a) for a in RDPAccountant.DEFAULT_ALPHAS] + [float(a) for a in _LARGE_ORDERS]
)
_ORDERS = np.array(RDP_ORDERS, dtype=np.float64)
#: Names the orders a stored curve was computed at (see ``curve_to_json``).
RDP_ORDERS_DIGEST = hashlib.sha256(json.dumps(RDP_ORDERS).encode()).hexdigest()[:16]

#: A mechanism record (``privacy.records``); the name predates that module.
Record = MechanismRecord
#: Anything a record is read from: a typed record, or a dict parsed from stored JSON.
RecordLike = Mapping[str, object]
_KEYS = MECHANISM_FIELDS


def _positive(record: RecordLike, field: str, *, upper: float | None = None) -> float:
    value = record.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AccountingError(
            f"mechanism record field '{field}' must be a number", details={"field": field}
        )
    value = float(value)
    if not math.isfinite(value) or value <= 0 or (upper is not None and value > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise AccountingError(
            f"mechanism record field '{field}' must be positive{bound}", details={"field": field}
        )
    return value


def _counter(record: RecordLike, field: str) -> int:
    n = record.get(field, 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AccountingError(
            f"mechanism record field '{field}' must be a positive integer",
            details={"field": field},
        )
    return n


def normalize_record(record: RecordLike) -> MechanismRecord:
    """Validate a mechanism record and return its canonical typed form (a plain dict).

    Raises:
        AccountingError: unknown mechanism, missing or out-of-range field.
    """
    if not isinstance(record, Mapping):
        raise AccountingError("a mechanism record must be a mapping", details={})
    mechanism = record.get("mechanism")
    if mechanism == "subsampled_gaussian":
        return SubsampledGaussianRecord(
            mechanism="subsampled_gaussian",
            noise_multiplier=_positive(record, "noise_multiplier"),
            sample_rate=_positive(record, "sample_rate", upper=1.0),
            steps=_counter(record, "steps"),
        )
    if mechanism == "gaussian":
        return GaussianRecord(
            mechanism="gaussian",
            sigma=_positive(record, "sigma"),
            sensitivity=_positive(record, "sensitivity"),
            count=_counter(record, "count"),
        )
    if mechanism == "laplace":
        return LaplaceRecord(
            mechanism="laplace",
            scale=_positive(record, "scale"),
            sensitivity=_positive(record, "sensitivity"),
            count=_counter(record, "count"),
        )
    raise AccountingError(
        f"unknown mechanism {mechanism!r}; expected one of {sorted(_KEYS)}",
        details={"field": "mechanism"},
    )


def _merge_key(record: MechanismRecord) -> tuple[str, float, float]:
    """Records with the same key are the same mechanism: compose by adding counts.

    Gaussian and Laplace are keyed by their noise-to-sensitivity ratio, which is all
    the privacy analysis depends on.
    """
    if record["mechanism"] == "subsampled_gaussian":
        return ("subsampled_gaussian", record["noise_multiplier"], record["sample_rate"])
    if record["mechanism"] == "gaussian":
        return ("gaussian", record["sigma"] / record["sensitivity"], 1.0)
    return ("laplace", record["scale"] / record["sensitivity"], 1.0)


@functools.lru_cache(maxsize=4096)
def _rdp_curve(key: tuple[str, float, float]) -> np.ndarray:
    """RDP of ONE step/release of a mechanism at every order in ``RDP_ORDERS``."""
    mechanism, ratio, q = key
    if mechanism == "subsampled_gaussian":
        usable = _ORDERS <= 1024
        curve = np.full_like(_ORDERS, np.nan)
        curve[usable] = opacus_rdp.compute_rdp(
            q=q, noise_multiplier=ratio, steps=1, orders=list(_ORDERS[usable])
        )
    elif mechanism == "gaussian":
        curve = _ORDERS / (2.0 * ratio**2)
    else:
        curve = laplace_rdp(1.0 / ratio, _ORDERS)
    curve = np.asarray(curve, dtype=np.float64)
    curve.setflags(write=False)
    return curve


def rdp_curve_of(records: Iterable[RecordLike]) -> np.ndarray:
    """The composed RDP curve of ``records`` at ``RDP_ORDERS`` (validated; counts multiply).

    One curve per distinct mechanism is computed (and cached in this process); storing the
    result with the release that carries the records means no later process recomputes it.
    """
    total = np.zeros_like(_ORDERS)
    for record in records:
        rec = normalize_record(record)
        total = total + record_count(rec) * _rdp_curve(_merge_key(rec))
    return total


def curve_to_json(curve: np.ndarray) -> dict[str, object]:
    """A curve as stored JSON: ``{"orders": RDP_ORDERS_DIGEST, "rdp": [float | None]}``."""
    values = [None if not math.isfinite(v) else float(v) for v in np.asarray(curve).tolist()]
    return {"orders": RDP_ORDERS_DIGEST, "rdp": values}


def curve_from_json(stored: object) -> np.ndarray | None:
    """The curve ``curve_to_json`` stored, or None when it is absent or was computed at
    other orders (the caller then recomputes it from the records)."""
    if not isinstance(stored, Mapping) or stored.get("orders") != RDP_ORDERS_DIGEST:
        return None
    values = stored.get("rdp")
    if not isinstance(values, list) or len(values) != len(RDP_ORDERS):
        return None
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def merge_records(records: Iterable[RecordLike]) -> list[MechanismRecord]:
    """``records`` validated, with identical mechanisms merged (what PRV and PLD compose)."""
    return PrivacyLedger(records, accountant="rdp").records


def laplace_rdp(epsilon: float, orders: np.ndarray) -> np.ndarray:
    """RDP of the Laplace mechanism with pure-DP parameter ``epsilon`` (= sensitivity/scale).

    Mironov (2017), Proposition 6, for order a > 1:
    ``1/(a-1) * log( a/(2a-1) * exp((a-1) eps) + (a-1)/(2a-1) * exp(-a eps) )``,
    evaluated in log space so that large orders do not overflow.
    """
    a = np.asarray(orders, dtype=np.float64)
    log_terms = np.logaddexp(
        np.log(a / (2 * a - 1)) + (a - 1) * epsilon,
        np.log((a - 1) / (2 * a - 1)) - a * epsilon,
    )
    return log_terms / (a - 1)


def _check_delta(delta: float) -> float:
    if not (isinstance(delta, int | float) and 0 < float(delta) < 1):
        raise AccountingError("delta must be in (0, 1)", details={"field": "delta"})
    return float(delta)


class PrivacyLedger:
    """Every mechanism released about one dataset, merged and composed on demand.

    Example:
        >>> ledger = PrivacyLedger(accountant="rdp")
        >>> ledger.add({"mechanism": "subsampled_gaussian", "noise_multiplier": 1.1,
        ...             "sample_rate": 0.01, "steps": 1000})
        >>> ledger.fits(planned, cap_epsilon=10.0, delta=1e-5)  # doctest: +SKIP
    """

    def __init__(
        self,
        records: Iterable[RecordLike] = (),
        *,
        accountant: str = "rdp",
        rdp: np.ndarray | None = None,
    ):
        """``rdp``: a composed RDP curve at ``RDP_ORDERS``, kept by the caller (see the
        module docstring), that the ``rdp`` accountant adds to the curves of ``records``.
        The caller vouches for it; ``records`` then need not repeat what it summarises
        (the ``prv`` and ``pld`` accountants ignore it and compose ``records`` alone, so
        they need the merged records themselves)."""
        if accountant not in ACCOUNTANTS:
            raise AccountingError(
                f"unknown accountant {accountant!r}; expected one of {list(ACCOUNTANTS)}",
                details={"field": "accountant"},
            )
        self.accountant = accountant
        self._merged: dict[tuple[str, float, float], MechanismRecord] = {}
        self._releases = 0
        self._base_rdp: np.ndarray | None = None
        if rdp is not None:
            base = np.asarray(rdp, dtype=np.float64)
            if base.shape != _ORDERS.shape:
                raise AccountingError(
                    f"an RDP curve has {len(RDP_ORDERS)} orders, not {base.size}",
                    details={"field": "rdp"},
                )
            # An all-zero curve is the empty history: epsilon 0, as with no records.
            if np.nansum(np.abs(base)) > 0:
                self._base_rdp = base
        self.extend(records)

    # -- building -------------------------------------------------------------------

    def add(self, record: RecordLike) -> None:
        """Append one release (validated); identical mechanisms merge their counts."""
        rec = normalize_record(record)
        key = _merge_key(rec)
        merged = self._merged.get(key)
        self._merged[key] = (
            rec if merged is None else with_count(merged, record_count(merged) + record_count(rec))
        )
        self._releases += 1

    def extend(self, records: Iterable[RecordLike]) -> None:
        for record in records:
            self.add(record)

    def copy(self) -> PrivacyLedger:
        other = PrivacyLedger(accountant=self.accountant)
        other._merged = dict(self._merged)  # records are never mutated in place
        other._releases = self._releases
        other._base_rdp = self._base_rdp  # never mutated in place either
        return other

    @property
    def records(self) -> list[MechanismRecord]:
        """The merged records, as plain JSON-serialisable dicts."""
        return [with_count(r, record_count(r)) for r in self._merged.values()]

    @property
    def releases(self) -> int:
        """How many records were added (before merging)."""
        return self._releases

    def __len__(self) -> int:
        return len(self._merged)

    def to_json(self) -> str:
        return json.dumps({"accountant": self.accountant, "records": self.records})

    @classmethod
    def from_json(cls, text: str) -> PrivacyLedger:
        data = json.loads(text)
        return cls(data.get("records", []), accountant=data.get("accountant", "rdp"))

    # -- questions ------------------------------------------------------------------

    def epsilon(self, *, delta: float) -> float:
        """The epsilon spent so far at ``delta`` (0.0 for an empty ledger)."""
        if self._base_rdp is not None and self.accountant == "rdp":
            return _rdp_epsilon(
                list(self._merged.values()), _check_delta(delta), base=self._base_rdp
            )
        return _compose(list(self._merged.values()), accountant=self.accountant, delta=delta)

    def epsilon_with(self, planned: Iterable[RecordLike], *, delta: float) -> float:
        """The epsilon the ledger would reach after the planned releases."""
        trial = self.copy()
        trial.extend(planned)
        return trial.epsilon(delta=delta)

    def fits(self, planned: Iterable[RecordLike], *, cap_epsilon: float, delta: float) -> bool:
        """Whether the ledger plus ``planned`` stays within ``cap_epsilon`` at ``delta``."""
        return self.epsilon_with(planned, delta=delta) <= cap_epsilon

    def require_fit(
        self, planned: Iterable[RecordLike], *, cap_epsilon: float, delta: float
    ) -> float:
        """Like ``fits`` but raises ``BudgetExceeded``; returns the epsilon after the plan."""
        after = self.epsilon_with(planned, delta=delta)
        if after > cap_epsilon:
            raise BudgetExceeded(
                f"the release would bring epsilon to {after:.4g}, over the cap {cap_epsilon:g}",
                details={
                    "epsilon_after": after,
                    "cap_epsilon": cap_epsilon,
                    "epsilon_spent": self.epsilon(delta=delta),
                },
            )
        return after

    def remaining(self, *, cap_epsilon: float, delta: float) -> float:
        """``cap_epsilon`` minus the spent epsilon, floored at 0.

        For display: composition is not additive, so whether a release fits must be
        asked with ``fits`` (a release "costing" more than ``remaining`` may still fit).
        """
        return max(0.0, cap_epsilon - self.epsilon(delta=delta))


def compose_epsilon(
    records: Iterable[RecordLike], *, delta: float, accountant: str = "rdp"
) -> float:
    """Epsilon of a list of records composed together (a one-shot ledger)."""
    return PrivacyLedger(records, accountant=accountant).epsilon(delta=delta)


def _compose(records: list[MechanismRecord], *, accountant: str, delta: float) -> float:
    delta = _check_delta(delta)
    if not records:
        return 0.0
    if accountant == "rdp":
        return _rdp_epsilon(records, delta)
    if accountant == "prv":
        return _prv_epsilon(records, delta)
    return _pld_epsilon(records, delta)


def _rdp_epsilon(
    records: list[MechanismRecord], delta: float, *, base: np.ndarray | None = None
) -> float:
    total = np.zeros_like(_ORDERS) if base is None else base
    for rec in records:
        total = total + record_count(rec) * _rdp_curve(_merge_key(rec))
    with np.errstate(invalid="ignore"):
        eps, _ = opacus_rdp.get_privacy_spent(orders=list(RDP_ORDERS), rdp=total, delta=delta)
    return float(eps)


class LaplacePRV:
    """Privacy loss random variable of the Laplace mechanism, for Opacus's PRV machinery.

    With X ~ Lap(0, b) and its neighbour Lap(1, b) (sensitivity 1, eps = 1/b), the loss
    ``(|X - 1| - |X|) / b`` is ``eps`` when X <= 0 (mass 1/2), ``-eps`` when X >= 1 (mass
    ``exp(-eps)/2``) and ``(1 - 2X)/b`` in between, so for -eps <= t < eps its CDF is
    ``exp((t - eps) / 2) / 2``. Opacus ships only the subsampled Gaussian's PRV.
    """

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon

    def cdf(self, t: float | np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        eps = self.epsilon
        inside = 0.5 * np.exp(np.minimum(t - eps, 0.0) / 2)
        return np.where(t < -eps, 0.0, np.where(t < eps, inside, 1.0))


def _prv_epsilon(records: list[MechanismRecord], delta: float, eps_error: float = 0.01) -> float:
    """Gopi et al. (2021) numerical composition with Opacus's PRV building blocks.

    Same recipe as Opacus's ``PRVAccountant`` (domain from an RDP bound, truncation,
    discretisation, FFT composition, upper bound with ``eps_error``), extended to
    Gaussian releases (sampling rate 1) and Laplace releases (``LaplacePRV``).
    """
    from opacus.accountants.analysis.prv import (
        Domain,
        PoissonSubsampledGaussianPRV,
        TruncatedPrivacyRandomVariable,
        compose_heterogeneous,
        discretize,
    )

    delta_error = delta / 1000
    prvs: list[PoissonSubsampledGaussianPRV | LaplacePRV] = []
    counts: list[int] = []
    for rec in records:
        if rec["mechanism"] == "subsampled_gaussian":
            prvs.append(PoissonSubsampledGaussianPRV(rec["sample_rate"], rec["noise_multiplier"]))
        elif rec["mechanism"] == "gaussian":
            prvs.append(PoissonSubsampledGaussianPRV(1.0, rec["sigma"] / rec["sensitivity"]))
        else:
            prvs.append(LaplacePRV(rec["sensitivity"] / rec["scale"]))
        counts.append(record_count(rec))
    total = sum(counts)
    # Safe truncation (Gopi et al., remark 5.6, as in Opacus's compute_safe_domain_size).
    bound = _rdp_epsilon(records, delta_error / 4)
    for rec in records:
        single = with_count(rec, 1)
        bound = max(bound, _rdp_epsilon([single], delta_error / (8 * total)))
    bound = max(bound, eps_error) + 3
    mesh = eps_error / math.sqrt(total * math.log(12 / delta_error) / 2)
    domain = Domain.create_aligned(-bound, bound, mesh)
    # q = 1 makes Opacus evaluate log(0) on a branch it then discards.
    with np.errstate(divide="ignore", over="ignore"):
        truncated = [TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max) for p in prvs]
        composed = compose_heterogeneous(
            dprvs=[discretize(t, domain) for t in truncated], num_self_compositions=counts
        )
        _, _, upper = composed.compute_epsilon(delta, delta_error, eps_error)
    return float(upper)


def _pld_epsilon(records: list[MechanismRecord], delta: float) -> float:
    try:
        import dp_accounting
    except ImportError:  # pragma: no cover - depends on the environment
        raise AccountingError(
            "the pld accountant needs the optional package dp-accounting",
            details={"field": "accountant"},
        ) from None
    acc = dp_accounting.pld.PLDAccountant()
    for rec in records:
        event: object
        if rec["mechanism"] == "subsampled_gaussian":
            event = dp_accounting.PoissonSampledDpEvent(
                rec["sample_rate"], dp_accounting.GaussianDpEvent(rec["noise_multiplier"])
            )
        elif rec["mechanism"] == "gaussian":
            event = dp_accounting.GaussianDpEvent(rec["sigma"] / rec["sensitivity"])
        else:
            event = dp_accounting.LaplaceDpEvent(rec["scale"] / rec["sensitivity"])
        acc.compose(event, record_count(rec))
    return float(acc.get_epsilon(delta))
