"""Money: Decimal amounts in one currency, stored as integer minor units. Never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from 2.
_EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


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
    return (Decimal(minor).scaleb(-exponent(currency))).quantize(
        quantum(currency), rounding=ROUND_HALF_EVEN
    )
