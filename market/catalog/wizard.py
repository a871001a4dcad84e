"""The listing wizard's second step as a form: one row per column, then the terms of sale.

The owner never writes JSON. This module turns a file's profile (``market.catalog.profile``)
into the form's starting choices (suggestions rounded outwards, spaces trimmed when the file
has padded values, "?" and the like read as missing when found), reads the choices the
owner sends back, and builds docs/api.md's metadata from them. Errors come back keyed by
the form field they concern, worded for people, so the page can show them at the top and on
the field.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from market.catalog.profile import MISSING_MARKS, ColumnProfile, FileProfile, nice_ceil
from market.catalog.schemas import DatasetCreate
from market.errors import field_errors

MISSING_CHOICES = ("category", "fill", "refuse")
MISSING_CATEGORY_NAMES = ("missing", "(missing)", "unknown")
#: Categories offered as checkboxes per column; a column with more is better numeric or left out.
MAX_OFFERED = 200
#: A category found in fewer rows is rare: publishing its name says a few rows hold it.
RARE_ROWS = 5
FIELD_LABELS = {
    "title": "Title",
    "description": "Description",
    "licence": "Licence",
    "tags": "Tags",
    "label": "Label column",
    "privacy.epsilon_total": "Total privacy budget (epsilon)",
    "privacy.delta": "Delta",
    "privacy.max_epsilon_per_run": "Largest epsilon of one run",
    "price.per_run": "Price per run",
    "price.per_epsilon": "Price per unit of epsilon",
    "price.currency": "Currency",
    "missing_values": "Cells that mean “missing”",
    "privacy": "Largest epsilon of one run",
}
FIELD_IDS = {
    "privacy.epsilon_total": "epsilon_total",
    "privacy.delta": "delta",
    "privacy.max_epsilon_per_run": "max_epsilon_per_run",
    "privacy": "max_epsilon_per_run",
    "price.per_run": "per_run",
    "price.per_epsilon": "per_epsilon",
    "price": "per_run",
    "image.features_key": "features_key",
    "image.labels_key": "labels_key",
    "image.class_names": "class_names",
    "image.shape": "features_key",
    "image.pixel_range": "pixel_max",
    "missing_values": "other_marks",
    "body": "columns",
}
#: Pydantic's messages as people read them (the form's fields are text boxes, not types).
PLAIN_WORDS = (
    (r"Input should be a finite number", "write a number (not “nan” or “inf”)"),
    (r"Input should be a valid (number|decimal).*", "write a number, e.g. 12.5"),
    (r"String should have at least 1 character", "this cannot be empty"),
    (r"String should have at most (\d+) characters?", r"at most \1 characters"),
    (
        r"List should have at least (\d+) items? after validation, not (\d+)",
        r"at least \1 needed (\2 given)",
    ),
    (
        r"List should have at most (\d+) items? after validation, not (\d+)",
        r"at most \1 accepted (\2 given)",
    ),
    (r"String should match pattern .*", "use lowercase letters, digits, “.”, “_” or “-” only"),
    (r"Decimal input should have no more than (\d+) digits? in total", r"at most \1 digits"),
    (r"Decimal input should have no more than (\d+) decimal places?", r"at most \1 decimals"),
    (r"Input should be greater than or equal to (\S+)", r"must be at least \1"),
    (r"Input should be greater than (\S+)", r"must be more than \1"),
    (r"Input should be less than or equal to (\S+)", r"must be at most \1"),
    (r"Input should be less than (\S+)", r"must be less than \1"),
    (r"max_epsilon_per_run cannot exceed epsilon_total", "cannot exceed the total budget"),
    (r"fill must be one of its categories", "choose one of the categories kept"),
    (r"fill must lie between min and max", "must lie between the bounds"),
    (r"max must be greater than min", "must be greater than the lower bound"),
)


@dataclass
class Category:
    value: str
    count: int
    keep: bool = True


@dataclass
class ColumnChoice:
    """One row of the form: what the file holds (owner only) and what is published."""

    index: int
    profile: ColumnProfile
    publish: bool = True
    type: str = "categorical"
    min: str = ""
    max: str = ""
    scale: str = "linear"
    categories: list[Category] = field(default_factory=list)
    hidden_categories: int = 0
    missing: int = 0  # cells read as missing under the chosen trim and marks
    missing_mark: str = ""  # the category missing cells become ("category" choice)
    on_missing: str = "refuse"
    fill: str = ""

    @property
    def id(self) -> str:
        return f"c{self.index}"

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def numeric_possible(self) -> bool:
        return self.profile.minimum is not None

    @property
    def rare(self) -> int:
        """Offered categories found in fewer than RARE_ROWS rows (their names go public)."""
        return sum(1 for c in self.categories if c.count < RARE_ROWS)

    @property
    def identifying(self) -> bool:
        """Too many values to offer, or mostly values of one row each (names, ids): not
        publishable as categories, and publishing them would name rows."""
        found = len(self.categories)
        return self.hidden_categories > 0 or (found > 2 and self.rare * 2 > found)


@dataclass
class WizardForm:
    """Every choice of the form, as shown (strings, so a wrong entry is shown back)."""

    format: str
    rows: int
    title: str = ""
    description: str = ""
    licence: str = "CC-BY-4.0"
    tags: str = ""
    label: str = ""
    trim_spaces: bool = False
    padded: int = 0
    marks: list[tuple[str, int, bool]] = field(default_factory=list)
    other_marks: str = ""
    columns: list[ColumnChoice] = field(default_factory=list)
    epsilon_total: str = "10"
    delta: str = "1e-06"
    max_epsilon_per_run: str = "2"
    per_run: str = "5.00"
    per_epsilon: str = "2.00"
    currency: str = "EUR"
    arrays: list[tuple[str, list[int], str]] = field(default_factory=list)
    features_key: str = ""
    labels_key: str = ""
    pixel_min: str = "0"
    pixel_max: str = "1"
    class_names: str = ""

    @property
    def label_options(self) -> list[str]:
        return [c.name for c in self.columns if c.type == "categorical" and c.publish]

    @property
    def chosen_marks(self) -> list[str]:
        marks = [m for m, _, chosen in self.marks if chosen]
        marks += [m.strip() for m in self.other_marks.split(",") if m.strip()]
        return list(dict.fromkeys(marks))


def _fmt(value: float) -> str:
    return f"{value:g}"


def _file_marks(profile: FileProfile) -> Counter[str]:
    found: Counter[str] = Counter()
    for column in profile.columns:
        found.update(column.marks)
    return found


def _groups(column: ColumnProfile, *, trim: bool, marks: set[str]) -> tuple[Counter[str], int]:
    """The column's categories under the chosen trim and marks, and its missing cells."""
    groups: Counter[str] = Counter()
    missing = column.empty
    for raw, count in column.counts.items():
        if raw.strip() in marks:
            missing += count
            continue
        groups[raw.strip() if trim else raw] += count
    if column.kind == "numeric":
        missing += sum(n for m, n in column.marks.items() if m in marks)
        missing += sum(n for raw, n in column.numbers.items() if raw.strip() in marks)
    return groups, missing


def _missing_category(groups: Counter[str]) -> str:
    """The category a missing cell becomes when the owner keeps missing cells as their own
    class (a mark itself cannot be a category: it is read as missing)."""
    for name in MISSING_CATEGORY_NAMES:
        if name not in groups:
            return name
    return f"missing ({len(groups)})"


def _sent(value: str, *, loose: bool = True) -> str:
    """A value as a browser sends it back, for comparison: form submission turns every
    line break into CRLF (a quoted CSV cell may hold one). ``loose``: spaces as trimming
    would, when the trim choice just changed (" Private" ticked is then "Private")."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value.strip() if loose else value


def _fill_columns(
    form: WizardForm, kept: dict[int, set[str] | None], *, trim_changed: bool = True
) -> None:
    """(Re)compute each row's categories and missing cells from the trim and mark choices;
    ``kept``: per column, the categories the owner ticked (None: all, as suggested)."""
    marks = set(form.chosen_marks)
    for choice in form.columns:
        groups, missing = _groups(choice.profile, trim=form.trim_spaces, marks=marks)
        ticked = kept.get(choice.index)
        stripped = {_sent(k, loose=trim_changed) for k in ticked} if ticked is not None else None
        ordered = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))
        choice.categories = [
            Category(value, count, stripped is None or _sent(value, loose=trim_changed) in stripped)
            for value, count in ordered[:MAX_OFFERED]
        ]
        if choice.type == "categorical" and choice.fill not in groups:
            # The fill as the browser sent it, matched back to the category it names.
            found = (v for v, _ in ordered if _sent(v) == _sent(choice.fill))
            choice.fill = next(found, choice.fill)
        unread = choice.profile.distinct - len(choice.profile.counts)  # beyond the kept
        choice.hidden_categories = max(0, len(ordered) - MAX_OFFERED)
        if choice.profile.counts and unread > 0:
            choice.hidden_categories += unread
        choice.missing = missing
        choice.missing_mark = _missing_category(groups)


def _suggested_bounds(column: ColumnProfile) -> tuple[str, str]:
    """The column's range rounded outwards to its leading digit (never empty)."""
    bounds = column.suggested_bounds()
    if bounds is None:
        return "", ""
    low, high = bounds
    if high <= low:
        high = nice_ceil(low + 1)
    return _fmt(low), _fmt(high)


def _suggest_missing(choice: ColumnChoice) -> None:
    """Missing cells filled with the lower bound (numeric) or kept as their own category."""
    if choice.type == "numeric":
        choice.on_missing = "fill" if choice.missing else "refuse"
        choice.fill = choice.fill or choice.min
    else:
        choice.on_missing = "category" if choice.missing else "refuse"
        choice.fill = choice.fill or (choice.categories[0].value if choice.categories else "")


def initial_form(profile: FileProfile, *, title: str, currency: str) -> WizardForm:
    """The suggestions: every column published as detected, bounds rounded outwards, spaces
    trimmed if any value is padded, common missing marks read as missing and kept as their
    own category (categorical) or filled with the lower bound (numeric)."""
    form = WizardForm(format=profile.format, rows=profile.rows, title=title, currency=currency)
    if profile.format == "npz":
        form.arrays = profile.arrays
        images = [a for a in profile.arrays if len(a[1]) >= 3]
        labels = [a for a in profile.arrays if len(a[1]) == 1]
        form.features_key = images[0][0] if images else ""
        form.labels_key = labels[0][0] if labels else ""
        form.pixel_max = "255" if images and images[0][2].startswith("uint") else "1"
        return form
    form.padded = sum(c.padded for c in profile.columns)
    form.trim_spaces = form.padded > 0
    form.marks = [(m, n, True) for m, n in _file_marks(profile).most_common()]
    for i, column in enumerate(profile.columns):
        choice = ColumnChoice(index=i, profile=column, type=column.kind)
        if column.kind == "numeric":
            choice.min, choice.max = _suggested_bounds(column)
        form.columns.append(choice)
    _fill_columns(form, {})
    for choice in form.columns:
        _suggest_missing(choice)
    candidates = profile.label_candidates
    form.label = candidates[-1] if candidates else ""
    for choice in form.columns:  # suggested left out: its categories would name rows
        if choice.type == "categorical" and choice.name != form.label and choice.identifying:
            choice.publish = False
    return form


def read_form(profile: FileProfile, data: MultiDict[str, str], *, currency: str) -> WizardForm:
    """The owner's choices as sent (the profile gives the columns; names are never taken
    from the form)."""
    text = {
        name: str(data.get(name, "") or "")[:5000]
        for name in (
            "title",
            "description",
            "licence",
            "tags",
            "label",
            "other_marks",
            "epsilon_total",
            "delta",
            "max_epsilon_per_run",
            "per_run",
            "per_epsilon",
            "features_key",
            "labels_key",
            "pixel_min",
            "pixel_max",
            "class_names",
        )
    }
    form = WizardForm(format=profile.format, rows=profile.rows, currency=currency)
    for name, value in text.items():
        setattr(form, name, value)
    if profile.format == "npz":
        form.arrays = profile.arrays
        return form
    form.padded = sum(c.padded for c in profile.columns)
    form.trim_spaces = data.get("trim_spaces") == "on"
    chosen = set(data.getlist("missing_marks"))
    form.marks = [(m, n, m in chosen) for m, n in _file_marks(profile).most_common()]
    kept: dict[int, set[str] | None] = {}
    unasked: list[ColumnChoice] = []  # no missing cells were shown: nothing chosen yet
    for i, column in enumerate(profile.columns):
        key = f"c{i}"
        kind = data.get(f"{key}-type", column.kind)
        choice = ColumnChoice(
            index=i,
            profile=column,
            publish=data.get(f"{key}-publish") == "on",
            type=kind if kind in ("numeric", "categorical") else column.kind,
            min=str(data.get(f"{key}-min", "") or "")[:40],
            max=str(data.get(f"{key}-max", "") or "")[:40],
            scale="log" if data.get(f"{key}-scale") == "log" else "linear",
            on_missing=str(data.get(f"{key}-missing", "refuse")),
            fill=str(data.get(f"{key}-fill", "") or "")[:200],
        )
        if choice.on_missing not in MISSING_CHOICES:
            choice.on_missing = "refuse"
        kept[i] = set(data.getlist(f"{key}-keep"))
        if data.get(f"{key}-shown") != choice.type:  # just switched: start from suggestions
            kept[i] = None
            if choice.type == "numeric":
                choice.min, choice.max = _suggested_bounds(column)
                choice.fill = choice.min
        if f"{key}-missing" not in data:
            unasked.append(choice)
        form.columns.append(choice)
    # Untouched trimming: " Private" and "Private" are two choices, compared exactly.
    trim_changed = data.get("trim_shown", "on" if form.trim_spaces else "") != (
        "on" if form.trim_spaces else ""
    )
    _fill_columns(form, kept, trim_changed=trim_changed)
    for choice in unasked:  # a mark chosen since makes cells missing: the suggestion
        if choice.missing:
            _suggest_missing(choice)
    return form


def _number(text: str) -> float | str | None:
    try:
        value = float(text.strip())
    except ValueError:
        return text  # the schema says why it is not a number
    return value if math.isfinite(value) else None  # "nan", "inf": not a number either


def metadata_of(form: WizardForm) -> dict[str, Any]:
    """docs/api.md's metadata from the form's choices."""
    meta: dict[str, Any] = {
        "title": form.title.strip(),
        "description": form.description.strip(),
        "licence": form.licence.strip(),
        "tags": [t.strip().lower() for t in form.tags.split(",") if t.strip()],
        "format": form.format,
        "privacy": {
            "epsilon_total": _number(form.epsilon_total),
            "delta": _number(form.delta),
            "max_epsilon_per_run": _number(form.max_epsilon_per_run),
        },
        "price": {
            "per_run": form.per_run.strip(),
            "per_epsilon": form.per_epsilon.strip(),
            "currency": form.currency,
        },
    }
    if form.format == "npz":
        shape = next((s for k, s, _ in form.arrays if k == form.features_key), [])
        meta["image"] = {
            "features_key": form.features_key,
            "labels_key": form.labels_key,
            "shape": list(shape[1:]),
            "pixel_range": {"min": _number(form.pixel_min), "max": _number(form.pixel_max)},
            "class_names": [
                n.strip() for n in form.class_names.replace("\n", ",").split(",") if n.strip()
            ],
        }
        return meta
    meta["label"] = (form.label.strip() if form.trim_spaces else form.label) or None
    if form.trim_spaces:
        meta["trim_spaces"] = True
    marks = form.chosen_marks
    if marks:
        written = set(marks)
        if not form.trim_spaces:  # without trimming, a mark counts only as written
            for column in form.columns:
                texts = [*column.profile.counts, *column.profile.numbers]
                written |= {r for r in texts if r.strip() in marks}
        meta["missing_values"] = sorted(written)
    columns = []
    for choice in form.columns:
        if not choice.publish:
            continue
        name = choice.name.strip() if form.trim_spaces else choice.name
        spec: dict[str, Any] = {"name": name, "type": choice.type}
        if choice.type == "numeric":
            spec.update(min=_number(choice.min), max=_number(choice.max))
            if choice.scale == "log":
                spec["scale"] = "log"
        else:
            # In their own order, not by count: the order is public, the counts are not.
            spec["categories"] = sorted(c.value for c in choice.categories if c.keep)
        if choice.missing:
            if choice.on_missing == "category" and choice.type == "categorical":
                if choice.missing_mark not in spec["categories"]:
                    spec["categories"].append(choice.missing_mark)
                spec["fill"] = choice.missing_mark
            elif choice.on_missing == "fill" and choice.name != form.label:
                spec["fill"] = _number(choice.fill) if choice.type == "numeric" else choice.fill
        columns.append(spec)
    meta["columns"] = columns
    return meta


def kept_columns(form: WizardForm) -> list[str] | None:
    """The file's columns (as written) to store, or None when every one is published."""
    if form.format == "npz" or all(c.publish for c in form.columns):
        return None
    return [c.name for c in form.columns if c.publish]


def _column_field(form: WizardForm, loc: list[str]) -> tuple[str, str]:
    """The form field and the people's name of ``columns.<j>.<part>``."""
    published = [c for c in form.columns if c.publish]
    try:
        choice = published[int(loc[1])]
    except (IndexError, ValueError):
        return "columns", "Columns"
    rest = [p for p in loc[2:] if p not in ("numeric", "categorical")]  # the union's tag
    part = rest[0] if rest else ""
    where = {
        "min": ("min", "lower bound"),
        "max": ("max", "upper bound"),
        "categories": ("categories", "categories"),
        "fill": ("fill", "value for missing cells"),
        "scale": ("scale", "scale"),
    }.get(part, ("publish", "description"))
    return f"{choice.id}-{where[0]}", f"Column “{choice.name}”, {where[1]}"


def form_errors(form: WizardForm, exc: ValidationError) -> list[tuple[str, str]]:
    """Pydantic's errors as (field id, sentence) pairs for the page."""
    out = []
    for error in field_errors(exc):
        loc = error["field"].split(".")
        message = error["message"]
        message = message[:1].upper() + message[1:]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if loc[0] == "columns" and len(loc) > 1:
            # A column's own check names the column and the part it concerns.
            message = re.sub(r"^column '.*?': ", "", message, flags=re.DOTALL)
            if len([p for p in loc[2:] if p not in ("numeric", "categorical")]) == 0:
                part = "fill" if message.startswith("fill") else "max" if "max" in message else ""
                loc = [*loc[:2], part]
            target, name = _column_field(form, loc)
        elif loc[0] == "image":
            target = FIELD_IDS.get(".".join(loc[:2]), "features_key")
            name = "Images"
        else:
            key = ".".join(loc[:2])
            target = FIELD_IDS.get(key) or FIELD_IDS.get(loc[0]) or loc[0]
            name = FIELD_LABELS.get(key, FIELD_LABELS.get(loc[0], ""))
        message = _plain(message)
        out.append((target, f"{name}: {message}" if name else message))
    return out


def _plain(message: str) -> str:
    for pattern, words in PLAIN_WORDS:
        if re.fullmatch(pattern, message):
            message = re.sub(pattern, words, message)
            break
    return message[:1].upper() + message[1:]


def problem_field(form: WizardForm, details: dict[str, Any]) -> str:
    """The field a service error points at: a column its details name (by name, or as
    ``columns[i]`` / ``columns.i`` among the published ones), else its field."""
    names = {c.name: c.id for c in form.columns}
    names.update({c.name.strip(): c.id for c in form.columns})
    counted = details.get("columns")
    shown = {c.id: c for c in form.columns}
    for name, kinds in counted.items() if isinstance(counted, dict) else []:
        if name not in names:
            continue
        choice = shown[names[name]]
        kinds = kinds if isinstance(kinds, dict) else {}
        if choice.type == "numeric" and "out_of_range" in kinds:
            return f"{choice.id}-min"  # the bounds, where the range is said
        if choice.type == "categorical" and "unknown_category" in kinds and choice.categories:
            return f"{choice.id}-categories"
        return f"{choice.id}-publish"
    found = str(details.get("field") or details.get("column") or "")
    if found in names:
        return f"{names[found]}-publish"
    if match := re.fullmatch(r"columns(?:\[(\d+)\]|\.(\d+))(?:\.(\w+))?", found):
        index = match[1] or match[2]
        return _column_field(form, ["columns", index, match[3] or ""])[0]
    return FIELD_IDS.get(found, found.split(".")[0] or "file")


def validate(form: WizardForm) -> tuple[DatasetCreate | None, list[tuple[str, str]]]:
    """The metadata the form describes, or the errors to show."""
    errors: list[tuple[str, str]] = []
    if form.format == "npz":
        errors = _image_errors(form)
    else:
        for choice in form.columns:
            kept = [c for c in choice.categories if c.keep]
            if choice.publish and choice.type == "categorical" and choice.categories and not kept:
                errors.append(
                    (
                        f"{choice.id}-categories",
                        f"Column “{choice.name}”: keep at least one category, or leave the "
                        "column out.",
                    )
                )
            if choice.publish and not (choice.name.strip() if form.trim_spaces else choice.name):
                errors.append(
                    (
                        f"{choice.id}-publish",
                        f"Column {choice.index + 1} has no name in your file's header: leave "
                        "it out, or name it in the file and choose the file again.",
                    )
                )
            if choice.publish and choice.name == form.label and choice.missing:
                errors.append(
                    (
                        f"{choice.id}-missing",
                        f"Column “{choice.name}” is the label and has {choice.missing:,} "
                        "missing cells: a model cannot learn from a row without its label. "
                        "Remove those rows from the file, or untick their mark above so that "
                        "it is a class of its own.",
                    )
                )
        if not any(c.publish for c in form.columns):
            errors.append(("c0-publish", "Publish at least one column besides the label."))
    if errors:
        return None, errors
    try:
        return DatasetCreate.model_validate(metadata_of(form)), []
    except ValidationError as exc:
        return None, form_errors(form, exc)


def _image_errors(form: WizardForm) -> list[tuple[str, str]]:
    """The NPZ choices checked against the archive's arrays, before the schema's words."""
    shapes = {key: shape for key, shape, _ in form.arrays}
    errors = []
    if len(shapes.get(form.features_key, [])) not in (3, 4):
        errors.append(
            (
                "features_key",
                "Images: choose the array that holds the images (one image per row: "
                "rows × height × width, or rows × channels × height × width).",
            )
        )
    if len(shapes.get(form.labels_key, [])) != 1 or form.labels_key == form.features_key:
        errors.append(
            (
                "labels_key",
                "Images: choose the array that holds the labels (one class number per image).",
            )
        )
    names = [n for n in form.class_names.replace("\n", ",").split(",") if n.strip()]
    if len(names) < 2:
        errors.append(("class_names", "Images: name each class, in label order (at least two)."))
    return errors


__all__ = [
    "MISSING_MARKS",
    "WizardForm",
    "form_errors",
    "initial_form",
    "metadata_of",
    "problem_field",
    "read_form",
    "validate",
]
