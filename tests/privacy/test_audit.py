"""The privacy self-audit (privacy.audit): the bound, and faults it must catch.

Settings of the training runs (stated in docs/privacy-audit.md): 3,000 rows, m = 1,000
canaries, 4 epochs of batch 256 (40 steps at q = 0.1), seeded; about 3-5 s each.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest

from privacy.audit import (
    NOT_REFUTED,
    REFUTED,
    AuditSettings,
    epsilon_lower_bound,
    p_value,
    run_audit,
)
from privacy.training import train_private

SMALL = {"rows": 3000, "epochs": 4, "canaries": 1000, "seed": 7}


def test_p_value_without_delta_is_the_binomial_tail() -> None:
    # eps = 0: each guess is a fair coin; 10 of 10 correct has probability 2^-10.
    assert p_value(100, 10, 10, 0.0, 0.0) == pytest.approx(2**-10)
    assert p_value(100, 10, 0, 1.0, 0.0) == 1.0


def test_delta_term_makes_the_test_more_conservative() -> None:
    assert p_value(1000, 100, 80, 1.0, 1e-5) > p_value(1000, 100, 80, 1.0, 0.0)


def test_lower_bound_matches_perfect_guesses() -> None:
    # r perfect guesses, delta 0: the bound solves q^r = level, q = e^eps / (1 + e^eps).
    r, level = 100, 0.01
    q = level ** (1 / r)
    expected = math.log(q / (1 - q))
    assert epsilon_lower_bound(1000, r, r, 0.0, level) == pytest.approx(expected, rel=1e-6)
    assert epsilon_lower_bound(1000, r, 50, 1e-5, level) == 0.0


def test_production_cannot_reach_a_fault() -> None:
    parameter = inspect.signature(train_private).parameters["audit"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is None
    root = Path(__file__).resolve().parents[2] / "market"
    assert not [p for p in root.rglob("*.py") if "AuditHooks" in p.read_text()]


CASES = [(family, eps) for family in ("seed_mlp", "logistic_regression") for eps in (1.0, 4.0)]


@pytest.mark.slow
@pytest.mark.parametrize(("family", "epsilon"), CASES)
def test_real_pipeline_passes(family: str, epsilon: float) -> None:
    report = run_audit(AuditSettings(family=family, epsilon=epsilon, **SMALL))
    assert report.verdict == NOT_REFUTED, report.summary()
    assert report.lower_bound <= report.claim_epsilon
    assert 0.85 <= report.spread_ratio <= 1.15
    assert report.grad_sample_mode == "bk"


@pytest.mark.slow
@pytest.mark.parametrize(("family", "epsilon"), CASES)
@pytest.mark.parametrize("fault", ["skip_clipping", "no_noise", "half_noise"])
def test_faults_are_flagged(family: str, epsilon: float, fault: str) -> None:
    report = run_audit(AuditSettings(family=family, epsilon=epsilon, fault=fault, **SMALL))
    assert report.verdict == REFUTED, report.summary()
    if fault == "skip_clipping":
        assert report.shift_flag
    else:
        assert report.spread_flag
        assert report.spread_ratio < (0.6 if fault == "half_noise" else 0.01)
    if fault != "half_noise" and epsilon == 1.0:
        assert report.lower_bound > report.claim_epsilon


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_other_modes_catch_skipped_clipping(mode: str) -> None:
    settings = AuditSettings(grad_sample_mode=mode, fault="skip_clipping", **SMALL)
    report = run_audit(settings)
    assert report.grad_sample_mode == mode
    assert report.verdict == REFUTED


@pytest.mark.slow
def test_ghost_mode_passes() -> None:
    report = run_audit(AuditSettings(grad_sample_mode="ghost", epsilon=1.0, **SMALL))
    assert report.grad_sample_mode == "ghost"
    assert report.verdict == NOT_REFUTED, report.summary()


def test_report_is_canonical_json() -> None:
    from privacy.audit import AuditReport

    fields = set(AuditReport.__dataclass_fields__)
    assert {"claim_epsilon", "lower_bound", "spread_ratio", "shift", "verdict"} <= fields
