"""The typed records that leave the privacy library: mechanism records and the
preprocessing description.

They are ``TypedDict``s, so at runtime they stay the plain JSON dicts the database, the
signed audit log and the model files already hold (same field names, same order): typing
them changes no stored byte. Pydantic reads them too, so the marketplace's OpenAPI
document describes them (``market.trading.schemas``), and ``MECHANISM_RECORDS`` validates
a list read back from JSON with the same discriminated union.

Mechanism records (``privacy.accounting`` composes them; ``"mechanism"`` is the tag):

=========================  =========================================================
``subsampled_gaussian``    one DP-SGD run: ``noise_multiplier``, ``sample_rate``, ``steps``
``gaussian``               a Gaussian release: ``sigma``, ``sensitivity``, ``count``
``laplace``                a Laplace release: ``scale``, ``sensitivity``, ``count``
=========================  =========================================================

The preprocessing description (``privacy.preprocessing.describe``; ``"kind"`` is the tag)
is ``TabularDescription`` or ``ImageDescription``.

This module imports pydantic only (no torch), so a web process may import it.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypeAlias

from pydantic import Field, TypeAdapter

# pydantic reads TypedDicts from typing_extensions only on Python < 3.12.
from typing_extensions import TypedDict

# -- mechanism records ---------------------------------------------------------------


class SubsampledGaussianRecord(TypedDict):
    """DP-SGD: ``steps`` Poisson-subsampled Gaussian steps (noise ``noise_multiplier`` x C)."""

    mechanism: Literal["subsampled_gaussian"]
    noise_multiplier: float
    sample_rate: float
    steps: int


class GaussianRecord(TypedDict):
    """``count`` Gaussian releases with standard deviation ``sigma`` at ``sensitivity``."""

    mechanism: Literal["gaussian"]
    sigma: float
    sensitivity: float
    count: int


class LaplaceRecord(TypedDict):
    """``count`` Laplace releases with scale ``scale`` at ``sensitivity``."""

    mechanism: Literal["laplace"]
    scale: float
    sensitivity: float
    count: int


#: One mechanism record, discriminated by ``"mechanism"``.
MechanismRecord: TypeAlias = Annotated[
    SubsampledGaussianRecord | GaussianRecord | LaplaceRecord,
    Field(discriminator="mechanism"),
]
#: What each mechanism's parameters and counter are called (the record's field order).
MECHANISM_FIELDS: dict[str, tuple[tuple[str, str], str]] = {
    "subsampled_gaussian": (("noise_multiplier", "sample_rate"), "steps"),
    "gaussian": (("sigma", "sensitivity"), "count"),
    "laplace": (("scale", "sensitivity"), "count"),
}
#: Validates a list of records read back from JSON (shape only: ``privacy.accounting.
#: normalize_record`` applies the ranges and raises ``AccountingError``).
MECHANISM_RECORDS: TypeAdapter[list[MechanismRecord]] = TypeAdapter(list[MechanismRecord])


def record_count(record: MechanismRecord) -> int:
    """How many times the record's mechanism ran (``steps`` or ``count``)."""
    if record["mechanism"] == "subsampled_gaussian":
        return record["steps"]
    return record["count"]


def with_count(record: MechanismRecord, n: int) -> MechanismRecord:
    """The same mechanism, run ``n`` times."""
    if record["mechanism"] == "subsampled_gaussian":
        return {**record, "steps": n}
    if record["mechanism"] == "gaussian":
        return {**record, "count": n}
    return {**record, "count": n}


# -- the preprocessing description ---------------------------------------------------


class NumericFeature(TypedDict):
    name: str
    type: Literal["numeric"]
    min: float
    max: float
    scale: NotRequired[Literal["log"]]
    bins: NotRequired[list[float]]
    fill: NotRequired[float]


class CategoricalFeature(TypedDict):
    name: str
    type: Literal["categorical"]
    categories: list[str]
    fill: NotRequired[str]


Feature: TypeAlias = Annotated[NumericFeature | CategoricalFeature, Field(discriminator="type")]


class LabelSpec(TypedDict):
    name: str
    categories: list[str]


class PixelRange(TypedDict):
    min: float
    max: float


class TabularDescription(TypedDict):
    """Scaled numeric columns and one-hot categories, in ``encoded_columns`` order; with
    ``encoding: "codes"`` (``integer_coded``) each column is a category index instead."""

    kind: Literal["tabular"]
    version: int
    range: list[float]
    features: list[Feature]
    label: LabelSpec
    encoded_columns: list[str]
    encoding: NotRequired[Literal["codes"]]
    vocabulary: NotRequired[int]
    trim_spaces: NotRequired[bool]
    missing_values: NotRequired[list[str]]


class ImageDescription(TypedDict):
    """Channels-first images scaled from ``pixel_range`` to ``range``."""

    kind: Literal["image"]
    version: int
    range: list[float]
    shape: list[int]
    declared_shape: list[int]
    pixel_range: PixelRange
    label: LabelSpec
    features_key: str
    labels_key: str


#: What ``privacy.preprocessing.describe`` returns, discriminated by ``"kind"``.
PreprocessingDescription: TypeAlias = Annotated[
    TabularDescription | ImageDescription, Field(discriminator="kind")
]
