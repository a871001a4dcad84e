"""Money, in one module: exact Decimal amounts in one currency, rounded by one rule.

Never a float: a measured float enters through its shortest repr (``to_decimal``), stored
amounts are integers of minor units (``to_minor`` / ``from_minor``), JSON carries amounts
as strings (``Money.to_json``).

The minor-unit rule. A currency's minor unit is ``10 ** -exponent(currency)``, its ISO 4217
exponent: 2 for EUR and USD, 0 for JPY, 3 for BHD. Every rounded amount (each price term of
a quote or receipt, a royalty, a listing's prices) is quantised to it with ROUND_HALF_EVEN,
banker's rounding, which does not bias sums of many rounded terms upwards the way half-up
does: 0.125 -> 0.12, 0.135 -> 0.14. A total is the sum of its rounded terms, so a receipt
adds up as printed. Stored prices are refused, not rounded, when they are finer than the
minor unit (``to_minor``). The costing settings' ``minor_unit_digits`` must equal the
currency's exponent (``market.costing.settings`` checks it); ``quantize`` takes the digits
so a receipt recorded with its digits prices again exactly (``market.audit.ledgers``).

The accrual rule. A run's cost terms (compute, energy, environment, royalty, platform fee)
are far below a cent on small runs, so they are *not* rounded to the minor unit per run:
each is kept exactly to ``costing.accrual_digits`` places (9 by default, a nano-unit, well
past the 1e-6 floor), half to even, and stored in its shortest form with at least the
currency's minor digits (``accrue``: ``0.000049213``, ``2.50``). Those exact terms accrue per
account and are rounded once, on the monthly statement (``round_statement``).

The statement rule. A statement's total is the exact sum of its lines rounded once to the
minor unit, half to even. Each printed line is its exact sum rounded to the minor unit by
the largest-remainder method: every line is first rounded down, then the cents the total
still needs go, one each, to the lines with the largest remainders (ties: the first line).
So the printed lines add up to the printed total, each printed line is within one minor unit
of its exact sum, and the total is never off by the accumulated rounding of its lines.

Intermediate products are computed in a local decimal context of 28 significant digits
(``money_context``), so no result depends on a context a caller set.

Why a type rather than bare Decimals: adding two prices in different currencies is a bug
that numbers alone cannot catch. ``Money.__add__`` refuses it (``CurrencyMismatch``).
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from market.errors import InvalidRequest

# ISO 4217 minor-unit exponents that differ from 2.
_EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3}
# Significant digits of intermediate products: Python's default, pinned so results are stable.
PRECISION = 28


class CurrencyMismatch(InvalidRequest):
    """Two currencies in one sum (400 ``currency_mismatch``); also exported by
    ``market.costing.errors``."""

    code = "currency_mismatch"


def exponent(currency: str) -> int:
    """The currency's minor-unit digits (ISO 4217): 2 unless listed otherwise."""
    return _EXPONENTS.get(currency, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def money_context() -> decimal.Context:
    """A fresh context for money arithmetic: 28 digits, half-even, traps on invalid ops."""
    return decimal.Context(
        prec=PRECISION,
        rounding=ROUND_HALF_EVEN,
        traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
    )


def quantize(amount: Decimal, minor_unit_digits: int) -> Decimal:
    """Round ``amount`` to ``minor_unit_digits`` places, half to even (the rule above)."""
    step = Decimal(1).scaleb(-minor_unit_digits)
    return amount.quantize(step, rounding=ROUND_HALF_EVEN, context=money_context())


def plain(amount: Decimal) -> str:
    """``amount`` in positional notation, never exponent notation: an accrued nano-unit term
    prints as ``0.000000096``, not ``9.6E-8`` (what ``str`` gives after ``normalize``)."""
    return format(amount, "f")


def round_to_minor(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` to the currency's minor unit, half to even."""
    return quantize(amount, exponent(currency))


def accrue(amount: Decimal, accrual_digits: int, currency: str) -> Decimal:
    """An exact term as accrued: ``accrual_digits`` places, half to even, then in its shortest
    form that still shows the currency's minor digits (``2.500000000`` -> ``2.50``,
    ``0.000049213``). Equal amounts always give the same string."""
    exact = quantize(amount, accrual_digits)
    short = exact.normalize(context=money_context())
    minor = exponent(currency)
    exp = short.as_tuple().exponent
    if not isinstance(exp, int) or exp > -minor:
        return exact.quantize(quantum(currency), context=money_context())
    return short


def round_statement(exact: list[Decimal], currency: str) -> tuple[list[Decimal], Decimal]:
    """(printed lines, printed total) of non-negative exact line sums (the statement rule in
    the module docstring): the total is the exact sum rounded once, half to even; the lines
    are rounded by largest remainder so that they add up to it."""
    ctx = money_context()
    step = quantum(currency)
    if any(line < 0 for line in exact):
        raise ValueError("statement lines are non-negative sums")
    total = round_to_minor(sum(exact, Decimal(0)), currency)
    floors = [line.quantize(step, rounding=decimal.ROUND_FLOOR, context=ctx) for line in exact]
    missing = int(ctx.divide(total - sum(floors, Decimal(0)), step))
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] = floors[i] + step
    return floors, total


def format_amount(amount: Decimal | str, currency: str) -> str:
    """An amount for people, as it is: never "0.00" for a non-zero amount (``0.000049 EUR``)."""
    value = Decimal(str(amount))
    exp = value.as_tuple().exponent
    if not isinstance(exp, int):
        raise ValueError(f"not an amount of money: {amount!r}")
    return f"{accrue(value, max(-exp, exponent(currency)), currency)} {currency}"


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


def to_minor(amount: Decimal, currency: str) -> int:
    """Exact conversion; an amount finer than the currency's minor unit is refused."""
    try:
        scaled = amount.scaleb(exponent(currency))
    except InvalidOperation as exc:  # pragma: no cover - Decimal inputs are validated first
        raise ValueError(f"{amount} is not an amount of money") from exc
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency} allows")
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    return round_to_minor(Decimal(minor).scaleb(-exponent(currency)), currency)


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

    def quantized(self, minor_unit_digits: int | None = None) -> Money:
        """Rounded to the currency's minor unit (or to the digits a receipt recorded)."""
        digits = exponent(self.currency) if minor_unit_digits is None else minor_unit_digits
        return Money(quantize(self.amount, digits), self.currency)

    def __str__(self) -> str:
        return f"{plain(self.amount)} {self.currency}"

    def to_json(self) -> dict[str, str]:
        """Plain JSON: the amount as a string so no reader turns it into a float."""
        return {"amount": plain(self.amount), "currency": self.currency}


def money_sum(items: list[Money], currency: str) -> Money:
    """Sum in ``currency``; an item in another currency raises CurrencyMismatch."""
    total = Money(Decimal(0), currency)
    for item in items:
        total = total + item
    return total
