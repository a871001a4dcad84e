"""What the API accepts and returns for datasets; these models also write the OpenAPI document.

The metadata shape is docs/api.md's "Dataset metadata". What a valid schema is has one
rule, ``privacy.preprocessing.describe`` (the library that trains on it), which the service
calls on every draft, so the listing and the trainer can never disagree on what a schema
means.

Some of its checks are also stated here, on purpose: a bound written on a field (``le``,
``max_length``, ...) is what the OpenAPI document shows clients, and a check in a model
validator reports the field's location in the 422's ``fields`` list (``columns.0.numeric``)
rather than one message. Those bounds and predicates are taken from
``privacy.preprocessing`` (MAX_COLUMNS, MAX_CATEGORIES, MIN_CLASSES, IMAGE_RANKS,
MAX_IMAGE_SIDE, ``bounds_ordered``, ``repeats_a_category``), never restated; only the
messages are the API's own. The rest (the label among the columns and categorical, a
feature besides it, channels first, an ordered pixel range, no column named twice) is left
to ``describe``. The listing caps, smaller and set by the operator, are
``market.catalog.services.check_metadata_limits``'.
"""

from __future__ import annotations

import copy
import functools
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from market.catalog.models import DatasetFormat, DatasetStatus
from privacy.preprocessing import (
    IMAGE_RANKS,
    MAX_BIN_EDGES,
    MAX_CATEGORIES,
    MAX_COLUMNS,
    MAX_IMAGE_SIDE,
    MAX_MARK_LENGTH,
    MAX_MISSING_MARKS,
    MIN_CLASSES,
    bins_ok,
    bounds_ordered,
    repeats_a_category,
)

Name = Annotated[str, Field(min_length=1, max_length=200)]
Tag = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NumericColumn(_Strict):
    name: Name
    type: Literal["numeric"]
    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)
    scale: Literal["linear", "log"] = Field(
        default="linear",
        description="How values map onto the feature range: linear, or log1p(x - min) "
        "over log1p(max - min) for long-tailed amounts.",
    )
    bins: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None,
        max_length=MAX_BIN_EDGES,
        description="Edges e1 < ... < ek strictly between min and max: the column is then "
        "one-hot over [min, e1), [e1, e2), ..., [ek, max] instead of one scaled number (for "
        "amounts whose effect has thresholds). Public, like the bounds: choose round "
        "numbers, never the data's quantiles. Not with a log scale.",
    )
    fill: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="The value a missing cell takes (within min..max); without it a missing "
        "cell is refused.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> NumericColumn:
        if not bounds_ordered(self.min, self.max):
            raise ValueError(f"column {self.name!r}: max must be greater than min")
        if self.fill is not None and not self.min <= self.fill <= self.max:
            raise ValueError(f"column {self.name!r}: fill must lie between min and max")
        if self.bins is not None:
            if not bins_ok(self.bins, self.min, self.max):
                raise ValueError(
                    f"column {self.name!r}: bins must be increasing edges strictly between "
                    "min and max"
                )
            if self.scale == "log":
                raise ValueError(f"column {self.name!r}: bins or a log scale, not both")
        return self


class CategoricalColumn(_Strict):
    name: Name
    type: Literal["categorical"]
    categories: list[Annotated[str, Field(max_length=200)]] = Field(
        min_length=1, max_length=MAX_CATEGORIES
    )
    fill: str | None = Field(
        default=None,
        max_length=200,
        description="The category a missing cell takes (one of `categories`); without it a "
        "missing cell is refused. Not allowed on the label.",
    )

    @field_validator("categories")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if repeats_a_category(value):
            raise ValueError("a category is declared twice")
        return value

    @model_validator(mode="after")
    def _fill_declared(self) -> CategoricalColumn:
        if self.fill is not None and self.fill not in self.categories:
            raise ValueError(f"column {self.name!r}: fill must be one of its categories")
        return self


Column = Annotated[NumericColumn | CategoricalColumn, Field(discriminator="type")]


class PixelRange(_Strict):
    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)


class ImageSpec(_Strict):
    """Arrays in an .npz: images under ``features_key``, integer labels under ``labels_key``."""

    shape: list[Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]] = Field(
        min_length=min(IMAGE_RANKS), max_length=max(IMAGE_RANKS)
    )
    pixel_range: PixelRange
    class_names: list[Annotated[str, Field(max_length=200)]] = Field(
        min_length=MIN_CLASSES, max_length=MAX_CATEGORIES
    )
    features_key: str = Field(default="x", max_length=64)
    labels_key: str = Field(default="y", max_length=64)


class PrivacyTerms(_Strict):
    epsilon_total: float = Field(gt=0, le=100, description="Total budget over all runs.")
    delta: float = Field(gt=0, lt=0.01, description="Must also stay below 1/rows.")
    max_epsilon_per_run: float = Field(gt=0, le=100, description="Cap on one run's epsilon.")

    @model_validator(mode="after")
    def _cap_within_total(self) -> PrivacyTerms:
        if self.max_epsilon_per_run > self.epsilon_total:
            raise ValueError("max_epsilon_per_run cannot exceed epsilon_total")
        return self


class PricePolicy(_Strict):
    per_run: Decimal = Field(ge=0, max_digits=12, decimal_places=3, allow_inf_nan=False)
    per_epsilon: Decimal = Field(ge=0, max_digits=12, decimal_places=3, allow_inf_nan=False)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


MissingMark = Annotated[str, Field(min_length=1, max_length=MAX_MARK_LENGTH)]
TRIM_SPACES_DOC = (
    "Remove leading and trailing spaces from every cell (and header name) before reading it, "
    "as in files separated by ', '."
)
MISSING_VALUES_DOC = (
    "Cell texts that mean a missing value (after trimming), besides empty cells, e.g. '?'. "
    "A missing cell takes its column's `fill`, or is refused."
)


class DatasetCreate(_Strict):
    """A listing draft: everything but the file."""

    title: Name
    description: str = Field(default="", max_length=5000)
    licence: str = Field(min_length=1, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    format: DatasetFormat
    label: Name | None = None
    columns: list[Column] | None = Field(default=None, min_length=1, max_length=MAX_COLUMNS)
    trim_spaces: StrictBool = Field(default=False, description=TRIM_SPACES_DOC)
    missing_values: list[MissingMark] = Field(
        default_factory=list, max_length=MAX_MISSING_MARKS, description=MISSING_VALUES_DOC
    )
    image: ImageSpec | None = None
    privacy: PrivacyTerms
    price: PricePolicy

    @model_validator(mode="after")
    def _tabular_or_image(self) -> DatasetCreate:
        if self.format is DatasetFormat.NPZ:
            if self.image is None or self.columns is not None:
                raise ValueError(
                    "an npz dataset declares 'image' (shape, pixel_range, class_names)"
                )
        elif self.columns is None or self.image is not None or self.label is None:
            raise ValueError("a csv or parquet dataset declares 'columns' and its 'label' column")
        return self

    @field_validator("missing_values")
    @classmethod
    def _marks_trimmed(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Cells are trimmed before they are compared with the marks: a padded mark would
        never match."""
        padded = next((m for m in value if m != m.strip()), None)
        if info.data.get("trim_spaces") and padded is not None:
            raise ValueError(
                f"with trim_spaces cells are trimmed before they are compared: declare "
                f"{padded.strip()!r}, not {padded!r}"
            )
        return value

    @field_validator("trim_spaces")
    @classmethod
    def _names_trimmed(cls, value: bool, info: ValidationInfo) -> bool:
        """The header's names are trimmed too: a padded name could never match the file
        (a field's check, so that the 422 names ``trim_spaces``)."""
        columns = info.data.get("columns") or []
        names = [c.name for c in columns] + [info.data.get("label") or ""]
        if value and (padded := next((n for n in names if n != n.strip()), None)):
            raise ValueError(
                f"with trim_spaces the file's header names are trimmed too: declare "
                f"{padded.strip()!r}, not {padded!r}"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class Budget(BaseModel):
    epsilon_total: float
    delta: float
    epsilon_spent: float
    epsilon_remaining: float
    max_epsilon_per_run: float


class Price(BaseModel):
    per_run: str = Field(description="Decimal string in `currency`.")
    per_epsilon: str
    currency: str


class SchemaSummary(BaseModel):
    """The schema in a few numbers: what catalog pages carry instead of the whole schema."""

    columns: int | None = Field(description="Declared columns, the label included (tabular).")
    numeric_columns: int | None
    categorical_columns: int | None
    categories: int | None = Field(description="Categories over all categorical columns.")
    image_shape: list[int] | None = Field(description="One image's declared shape (npz).")
    classes: int = Field(description="Classes of the label.")


class DatasetPublic(BaseModel):
    """A listing as anyone signed in sees it: metadata and terms, never a row.

    ``GET /api/v1/datasets/{id}`` carries the whole schema (``columns`` or ``image``); the
    catalog list carries ``schema_summary`` only, with ``columns`` and ``image`` null.
    """

    id: str
    owner_id: int
    status: DatasetStatus
    title: str
    description: str
    licence: str
    tags: list[str]
    format: DatasetFormat
    label: str | None
    columns: list[Column] | None = None
    trim_spaces: bool = Field(default=False, description=TRIM_SPACES_DOC)
    missing_values: list[str] = Field(default_factory=list, description=MISSING_VALUES_DOC)
    image: ImageSpec | None = None
    schema_summary: SchemaSummary | None = None
    rows: int | None
    budget: Budget
    price: Price
    created_at: datetime
    listed_at: datetime | None


class DatasetPage(BaseModel):
    items: list[DatasetPublic] = Field(
        description="Listings with their schema_summary; columns and image are null here "
        "(GET /api/v1/datasets/{id} has them)."
    )
    total: int
    page: int
    page_size: int


class CatalogQuery(BaseModel):
    q: str | None = Field(
        default=None, max_length=200, description="Words in title, description or tags."
    )
    tag: str | None = Field(default=None, max_length=40)
    page: int = Field(default=1, ge=1, le=10_000)
    mine: bool = Field(default=False, description="Only your own listings, drafts included.")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Computed once: flask-openapi3 asks for it on every request to read the query
        string, and building it was a fifth of a catalog request's time."""
        return copy.deepcopy(_catalog_query_schema(cls, *args, **kwargs))


@functools.cache
def _catalog_query_schema(model: type[BaseModel], *args: Any, **kwargs: Any) -> dict[str, Any]:
    return BaseModel.model_json_schema.__func__(model, *args, **kwargs)  # type: ignore[attr-defined]


class DatasetPath(BaseModel):
    dataset_id: str = Field(max_length=64)
