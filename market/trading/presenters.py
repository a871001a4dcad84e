"""Rows -> public JSON shapes of docs/api.md (quotes and runs)."""

from __future__ import annotations

from typing import Any

from market.money import from_minor
from market.trading.models import Quote, Run
from market.trading.schemas import QuotePublic, RunPublic


def _price_terms(breakdown: dict[str, Any], currency: str) -> dict[str, str]:
    def amount(name: str) -> str:
        value = breakdown.get(name)
        if isinstance(value, dict):
            return str(value.get("amount"))
        return str(value)

    return {
        "compute": amount("compute"),
        "energy": amount("energy"),
        "environment": amount("environment"),
        "royalty": amount("royalty"),
        "platform_fee": amount("platform_fee"),
        "total": amount("total"),
        "currency": currency,
    }


def quote_public(quote: Quote, *, epsilon_total: float) -> QuotePublic:
    plan = quote.plan
    now = quote.estimate["now"]
    greenest = quote.estimate.get("greenest")
    return QuotePublic.model_validate(
        {
            "id": quote.id,
            "dataset_id": quote.dataset_id,
            "model": quote.request["model"],
            "mechanism": {
                "noise_multiplier": plan["noise_multiplier"],
                "sample_rate": plan["sample_rate"],
                "steps": plan["steps"],
                "accountant": plan["accountant"],
                "epsilon": plan["epsilon"],
                "delta": plan["delta"],
                "max_grad_norm": plan["max_grad_norm"],
                "epsilon_training": plan["epsilon_training"],
                "epsilon_metrics": plan["epsilon_metrics"],
            },
            "estimate": {
                "seconds": float(now["seconds"]),
                "energy_kwh": str(now["energy_kwh"]),
                "emissions_kg": str(now["emissions_kg"]),
                "price": _price_terms(now, quote.currency),
                "accuracy": quote.estimate.get("accuracy"),
            },
            "greenest_start": None
            if greenest is None
            else {
                "schedule": quote.estimate.get("schedule"),
                "emissions_kg": str(greenest["emissions_kg"]),
                "price": _price_terms(greenest, quote.currency),
            },
            "fits_budget": quote.fits_budget,
            "reason": quote.request.get("reason"),
            "budget": {"epsilon_total": epsilon_total, "epsilon_after": quote.epsilon_after},
            "worker": None
            if quote.estimate.get("availability") is None
            else {"worker_class": quote.estimate["worker_class"], **quote.estimate["availability"]},
            "created_at": quote.created_at,
            "expires_at": quote.expires_at,
        }
    )


def run_public(run: Run) -> RunPublic:
    return RunPublic.model_validate(
        {
            "id": run.id,
            "quote_id": run.quote_id,
            "dataset_id": run.dataset_id,
            "buyer_id": run.buyer_id,
            "status": run.status,
            "progress": {
                "step": run.progress_step,
                "steps": run.progress_steps,
                "epsilon_spent": run.progress_epsilon,
            },
            "privacy_receipt": run.privacy_receipt,
            "cost_receipt": run.cost_receipt,
            "metrics": run.metrics,
            "error": None
            if run.error_code is None
            else {"code": run.error_code, "message": run.error_message or ""},
            "price": {
                "total": str(from_minor(run.price_total_minor, run.currency)),
                "currency": run.currency,
            },
            "created_at": run.created_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
        }
    )
