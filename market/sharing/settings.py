"""Settings of model sharing (config/default.toml, section [sharing]).

Declared here, beside the code that reads them, and composed into ``market.config.Settings``
(as the accounts' settings are): this module imports nothing of the application.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class SharingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The dataset owner's share of each acquisition's price; the publisher gets the rest.
    owner_share: Decimal = Field(default=Decimal("0.30"), ge=0, le=1, allow_inf_nan=False)
    #: Highest price a publisher may ask, in minor units of the costing currency.
    max_price_minor: int = Field(default=100_000_000, ge=0)
