"""Money: half-even rounding to the minor unit, exact decimals, one currency per sum."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest

from market.costing.errors import CurrencyMismatch
from market.money import Money, accrue, money_sum, quantize, to_decimal


@pytest.mark.parametrize(
    ("amount", "digits", "expected"),
    [
        ("0.125", 2, "0.12"),  # half to even: 2 is even, stays
        ("0.135", 2, "0.14"),  # half to even: 3 is odd, goes up
        ("0.075", 2, "0.08"),
        ("0.0749999", 2, "0.07"),
        ("-0.125", 2, "-0.12"),
        ("2.5", 0, "2"),
        ("3.5", 0, "4"),
        ("1.0005", 3, "1.000"),
        ("0", 2, "0.00"),
    ],
)
def test_quantize_rounds_half_to_even(amount: str, digits: int, expected: str) -> None:
    result = quantize(Decimal(amount), digits)
    assert str(result) == expected


def test_quantize_ignores_a_caller_context_that_rounds_differently() -> None:
    with decimal.localcontext() as ctx:
        ctx.rounding = decimal.ROUND_HALF_UP
        ctx.prec = 3
        assert str(quantize(Decimal("1234.125"), 2)) == "1234.12"


def test_floats_enter_through_their_shortest_repr() -> None:
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal(3) == Decimal(3)
    with pytest.raises(ValueError):
        to_decimal(float("nan"))
    with pytest.raises(ValueError):
        to_decimal(float("inf"))


def test_money_refuses_floats_and_bad_codes() -> None:
    with pytest.raises(TypeError):
        Money(0.1, "EUR")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Money(Decimal(1), "EURO")


def test_adding_two_currencies_is_refused() -> None:
    with pytest.raises(CurrencyMismatch) as caught:
        Money(Decimal("1.00"), "EUR") + Money(Decimal("1.00"), "USD")
    assert caught.value.code == "currency_mismatch"
    assert caught.value.status == 400
    assert caught.value.details == {"currencies": ["EUR", "USD"]}


def test_money_sum_checks_every_item_against_the_currency() -> None:
    eur = [Money(Decimal("0.10"), "EUR"), Money(Decimal("0.20"), "EUR")]
    assert money_sum(eur, "EUR") == Money(Decimal("0.30"), "EUR")
    with pytest.raises(CurrencyMismatch):
        money_sum(eur, "USD")


def test_money_serialises_the_amount_as_a_string() -> None:
    assert Money(Decimal("1.50"), "EUR").to_json() == {"amount": "1.50", "currency": "EUR"}
    assert str(Money(Decimal("1.50"), "EUR")) == "1.50 EUR"


@pytest.mark.parametrize(
    ("exact", "printed"),
    [("0.000000096", "0.000000096"), ("0.000049213", "0.000049213"), ("2.500000000", "2.50")],
)
def test_accrued_terms_print_in_positional_notation(exact: str, printed: str) -> None:
    # normalize() turns 0.000000096 into Decimal("9.6E-8"): receipts must not show that.
    term = Money(accrue(Decimal(exact), 9, "EUR"), "EUR")
    assert term.to_json() == {"amount": printed, "currency": "EUR"}
    assert str(term) == f"{printed} EUR"
    assert Decimal(term.to_json()["amount"]) == Decimal(exact)
