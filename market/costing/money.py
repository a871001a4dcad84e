"""Money: an exact Decimal amount in one currency, rounded explicitly.

Why a type rather than bare Decimals: adding two prices in different currencies is a bug that
numbers alone cannot catch. ``Money.__add__`` refuses it (``CurrencyMismatch``).

Rounding: an amount is quantised to the currency's minor unit (``10**-minor_unit_digits``,
ISO 4217: 2 for EUR) with ROUND_HALF_EVEN, banker's rounding, which does not bias sums of
many rounded terms upwards the way half-up does. Each price term is rounded once, and the
total is the sum of the rounded terms, so a receipt always adds up as printed.
Intermediate products are computed in a local decimal context of 28 significant digits, so
the result does not depend on whatever global context a caller set.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from market.costing.errors import CurrencyMismatch

# Significant digits of intermediate products: Python's default, pinned so results are stable.
PRECISION = 28


def money_context() -> decimal.Context:
    """A fresh context for money arithmetic: 28 digits, half-even, traps on invalid ops."""
    return decimal.Context(
        prec=PRECISION,
        rounding=ROUND_HALF_EVEN,
        traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
    )


def quantize(amount: Decimal, minor_unit_digits: int) -> Decimal:
    """Round ``amount`` to the minor unit, half to even: 0.125 -> 0.12, 0.135 -> 0.14."""
    quantum = Decimal(1).scaleb(-minor_unit_digits)
    return amount.quantize(quantum, rounding=ROUND_HALF_EVEN, context=money_context())


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """A measured float enters money through its shortest repr, never its binary expansion.

    ``Decimal(0.1)`` is 0.1000000000000000055...; ``Decimal(repr(0.1))`` is 0.1.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite number: {value!r}")
        return Decimal(repr(value))
    return Decimal(value)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency (ISO 4217 code). Immutable; add only the same currency."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError("Money.amount must be a Decimal (no floats in money)")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise ValueError(f"not an ISO 4217 code: {self.currency!r}")

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(
                f"cannot combine {self.currency} with {other.currency}",
                details={"currencies": [self.currency, other.currency]},
            )

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same(other)
        return Money(money_context().add(self.amount, other.amount), self.currency)

    def quantized(self, minor_unit_digits: int) -> Money:
        return Money(quantize(self.amount, minor_unit_digits), self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    def to_json(self) -> dict[str, str]:
        """Plain JSON: the amount as a string so no reader turns it into a float."""
        return {"amount": str(self.amount), "currency": self.currency}


def money_sum(items: list[Money], currency: str) -> Money:
    """Sum in ``currency``; an item in another currency raises CurrencyMismatch."""
    total = Money(Decimal(0), currency)
    for item in items:
        total = total + item
    return total
