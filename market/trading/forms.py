"""The quote form of a dataset's page (Flask-WTF: it carries a CSRF token).

The form only turns fields into a ``QuoteRequest``; every rule (the spec's allow-list, the
budget, delta below 1/rows) stays in the service. The one bound checked here is the owner's
public per-run epsilon cap, which the page shows and the browser enforces too.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    DateTimeLocalField,
    FloatField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from market.catalog.schemas import DatasetPublic
from market.trading.reference import reference_for
from market.trading.schemas import QuoteRequest

MODEL_CHOICES = [
    SelectChoice("logistic_regression", "Logistic regression (template)"),
    SelectChoice("mlp", "Multi-layer perceptron (template)"),
    SelectChoice("cnn", "Convolutional network (template, images only)"),
    SelectChoice("layers", "My own layer list (JSON)"),
]

EXAMPLE_LAYERS = json.dumps(
    [
        {"type": "flatten"},
        {"type": "linear", "out_features": 64},
        {"type": "relu"},
        {"type": "linear", "out_features": 2},
    ]
)


class SpecInvalid(ValueError):
    """The model fields cannot form a spec (the message says which and why)."""


def template_suggestions(
    rows: int | None, *, data_kind: str = "tabular", epsilon: float = 1.0
) -> dict[str, dict[str, Any]]:
    """Per template, the epochs, batch size and learning rate the form starts from: the
    measured recipe for this kind of data at the form's epsilon where one exists, else the
    template's defaults (privacy.specs), the batch capped so that a small dataset still has
    several batches per epoch (its row count is public)."""
    # imports torch: only when a form is built
    from privacy.specs import SEED_MLP, TEMPLATE_DEFAULTS, template_defaults

    cap = max(1, int((rows or 0) * 0.8) // 4) if rows else None
    out = {}
    for kind in TEMPLATE_DEFAULTS:
        # A layer list's recipe was measured on the founding MLP and serves any layer list.
        spec = SEED_MLP if kind == "layers" else {"template": kind}
        values = template_defaults(spec, data_kind, epsilon)
        batch = int(values["batch_size"])
        out[kind] = {
            "epochs": int(values["epochs"]),
            "batch_size": min(batch, cap) if cap else batch,
            "learning_rate": float(values["learning_rate"]),
        }
    return out


class QuoteForm(FlaskForm):
    model_kind = SelectField(
        "Architecture", choices=list(MODEL_CHOICES), default="logistic_regression"
    )
    hidden = StringField(
        "Hidden layer sizes (MLP)", default="128", validators=[Optional(), Length(max=80)]
    )
    dropout = FloatField(
        "Dropout (MLP)", default=0.0, validators=[Optional(), NumberRange(min=0.0, max=0.9)]
    )
    layers = TextAreaField(
        "Layer list (JSON)", default=EXAMPLE_LAYERS, validators=[Optional(), Length(max=20_000)]
    )
    epsilon = FloatField("Epsilon (ε)", default=1.0, validators=[InputRequired()])
    epochs = IntegerField(
        "Epochs", default=5, validators=[InputRequired(), NumberRange(min=1, max=1000)]
    )
    batch_size = IntegerField(
        "Batch size (expected)",
        default=256,
        validators=[InputRequired(), NumberRange(min=1, max=1_000_000)],
    )
    learning_rate = FloatField(
        "Learning rate", validators=[Optional(), NumberRange(min=1e-9, max=10)]
    )
    worker_class = SelectField("Worker class")
    deadline = DateTimeLocalField("Finish by (UTC, optional)", validators=[Optional()])

    def __init__(
        self, *args: Any, dataset: DatasetPublic, worker_classes: list[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.dataset_id = dataset.id
        self.is_image = dataset.format.value == "npz"
        self.epsilon_cap = dataset.budget.max_epsilon_per_run
        self.model_kind.choices = [
            choice for choice in MODEL_CHOICES if choice.value != "cnn" or self.is_image
        ]
        self.worker_class.choices = [SelectChoice(name) for name in worker_classes]
        if not self.is_submitted() and worker_classes:
            self.worker_class.data = "cpu" if "cpu" in worker_classes else worker_classes[0]
        data_kind = "image" if self.is_image else "tabular"
        self.defaults = template_suggestions(dataset.rows, data_kind=data_kind)
        self.reference = reference_for(data_kind)
        if not self.is_submitted():
            first = self.defaults["logistic_regression"]
            self.epochs.data = first["epochs"]
            self.batch_size.data = first["batch_size"]
        self.epsilon.validators = [
            InputRequired(),
            NumberRange(
                min=1e-6,
                max=self.epsilon_cap,
                message=f"epsilon must be above 0 and at most the owner's cap of "
                f"{self.epsilon_cap:g} per run",
            ),
        ]

    def model_spec(self) -> dict[str, Any]:
        """The ``model`` of the quote request, from the chosen kind and its fields."""
        kind = self.model_kind.data
        if kind == "mlp":
            try:
                hidden = [int(part) for part in (self.hidden.data or "").replace(",", " ").split()]
            except ValueError as exc:
                raise SpecInvalid("hidden layer sizes are whole numbers, e.g. 128, 64") from exc
            if not hidden:
                raise SpecInvalid("give at least one hidden layer size, e.g. 128")
            return {"template": "mlp", "hidden": hidden, "dropout": self.dropout.data or 0.0}
        if kind == "layers":
            try:
                value = json.loads(self.layers.data or "")
            except json.JSONDecodeError as exc:
                raise SpecInvalid(f"the layer list is not valid JSON: {exc.msg}") from exc
            if isinstance(value, list):
                return {"layers": value}
            if isinstance(value, dict):
                return value
            raise SpecInvalid('the layer list is a JSON list of layers, or {"layers": [...]}')
        return {"template": kind}

    def to_request(self) -> QuoteRequest:
        """Raises SpecInvalid, or pydantic's ValidationError for out-of-range values."""
        deadline = self.deadline.data
        return QuoteRequest.model_validate(
            {
                "dataset_id": self.dataset_id,
                "model": self.model_spec(),
                "epsilon": self.epsilon.data,
                "epochs": self.epochs.data,
                "batch_size": self.batch_size.data,
                "learning_rate": self.learning_rate.data,
                "worker_class": self.worker_class.data,
                "deadline": None if deadline is None else deadline.replace(tzinfo=UTC),
            }
        )
