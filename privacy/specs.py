"""Declarative model specs, validated against an allow-list, built into ``torch.nn`` modules.

A researcher describes a model as data (``{"layers": [...]}`` or ``{"template": ...}``);
nothing in a spec is ever evaluated, imported or unpickled. Every layer type maps to one
``torch.nn`` class that Opacus can clip per sample, and every size field is bounded, so a
spec can neither run code nor ask the worker for unbounded memory. Shapes are inferred
layer by layer from the dataset's public input shape, which lets an error name the exact
layer index and field that is wrong (``SpecError.details = {"layer": 3, "field": ...}``).

The pydantic models here are also the request schema of the HTTP API, so the OpenAPI
document and the validation cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError
from torch import nn

from privacy.errors import SpecError

#: Default cap on trainable parameters; the app passes its own from settings.
DEFAULT_MAX_PARAMETERS = 5_000_000
#: Default cap on activation values per example (8 MB of float32; the Tramer & Boneh CNN
#: on MNIST uses about 12,000).
DEFAULT_MAX_ACTIVATIONS = 2_000_000
MAX_LAYERS = 32
MAX_WIDTH = 4096
MAX_CHANNELS = 512
MAX_KERNEL = 11
MAX_EMBEDDINGS = 100_000
MAX_EMBEDDING_DIM = 1024


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FlattenLayer(_Layer):
    type: Literal["flatten"]


class LinearLayer(_Layer):
    type: Literal["linear"]
    out_features: int = Field(ge=1, le=MAX_WIDTH)
    bias: bool = True


class Conv2dLayer(_Layer):
    type: Literal["conv2d"]
    out_channels: int = Field(ge=1, le=MAX_CHANNELS)
    kernel_size: int = Field(ge=1, le=MAX_KERNEL)
    stride: int = Field(default=1, ge=1, le=4)
    padding: int = Field(default=0, ge=0, le=5)


class Pool2dLayer(_Layer):
    type: Literal["maxpool2d", "avgpool2d"]
    kernel_size: int = Field(ge=1, le=8)
    stride: int | None = Field(default=None, ge=1, le=8)


class DropoutLayer(_Layer):
    type: Literal["dropout"]
    p: float = Field(ge=0.0, le=0.9)


class ActivationLayer(_Layer):
    type: Literal["relu", "tanh", "gelu"]


class GroupNormLayer(_Layer):
    type: Literal["groupnorm"]
    num_groups: int = Field(ge=1, le=MAX_CHANNELS)


class LayerNormLayer(_Layer):
    type: Literal["layernorm"]


class EmbeddingLayer(_Layer):
    """Token ids in, vectors out; only valid as the first layer of integer-coded input.

    Integer-coded input exists only where the owner declared every feature column
    categorical (``privacy.preprocessing.integer_coded``): each column's category code,
    offset so the columns share one table, with a public vocabulary size. The spec is
    refused unless ``num_embeddings`` covers that vocabulary, so no index can be out of
    range at run time: a private value never becomes an index that can fail.
    """

    type: Literal["embedding"]
    num_embeddings: int = Field(ge=1, le=MAX_EMBEDDINGS)
    embedding_dim: int = Field(ge=1, le=MAX_EMBEDDING_DIM)


Layer = Annotated[
    FlattenLayer
    | LinearLayer
    | Conv2dLayer
    | Pool2dLayer
    | DropoutLayer
    | ActivationLayer
    | GroupNormLayer
    | LayerNormLayer
    | EmbeddingLayer,
    Field(discriminator="type"),
]


class LayersSpec(BaseModel):
    """An explicit stack of allow-listed layers; the last one must output the class count."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    layers: list[Layer] = Field(min_length=1, max_length=MAX_LAYERS)


class LogisticRegressionTemplate(BaseModel):
    """Multinomial logistic regression: flatten, one linear layer."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    template: Literal["logistic_regression"]


class MlpTemplate(BaseModel):
    """Fully connected network. ``tanh`` by default: bounded activations keep clipped
    gradients informative under DP (Papernot et al. 2021, tempered sigmoids)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    template: Literal["mlp"]
    hidden: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [128], min_length=1, max_length=8
    )
    dropout: float = Field(default=0.0, ge=0.0, le=0.9)
    activation: Literal["relu", "tanh", "gelu"] = "tanh"


class CnnTemplate(BaseModel):
    """The tanh CNN of Tramer & Boneh (2021), table 9 (after Papernot et al. 2021).

    For images at least 16 pixels on a side it is their exact MNIST architecture
    (conv 16@8x8 s2 p3, tanh, maxpool 2 s1, conv 32@4x4 s2, tanh, maxpool 2 s1, dense 32,
    tanh, dense classes); smaller images get 3x3 kernels with the same widths.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    template: Literal["cnn"]
    channels: list[Annotated[int, Field(ge=1, le=MAX_CHANNELS)]] = Field(
        default_factory=lambda: [16, 32], min_length=1, max_length=4
    )
    dense: int = Field(default=32, ge=1, le=MAX_WIDTH)


def _spec_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, Mapping):
        return None
    if "template" in value:
        template = value["template"]
        return template if isinstance(template, str) else None
    return "layers" if "layers" in value else None


ModelSpec = Annotated[
    Annotated[LayersSpec, Tag("layers")]
    | Annotated[LogisticRegressionTemplate, Tag("logistic_regression")]
    | Annotated[MlpTemplate, Tag("mlp")]
    | Annotated[CnnTemplate, Tag("cnn")],
    Discriminator(
        _spec_tag,
        custom_error_type="invalid_model_spec",
        custom_error_message=(
            "a model is {'layers': [...]} or {'template': 'logistic_regression'|'mlp'|'cnn'}"
        ),
    ),
]
"""The request type of ``model`` in a quote: explicit layers or a named template."""

AnyModelSpec = LayersSpec | LogisticRegressionTemplate | MlpTemplate | CnnTemplate

_SPEC_ADAPTER: TypeAdapter[AnyModelSpec] = TypeAdapter(ModelSpec)

#: Hyper-parameters that published DP recipes use for each template. A flat learning
#: rate of 1e-3 stalls DP models on tabular data (docs/pitfalls.md: Adult stuck at
#: 0.79 with 1e-3, 0.85 with 1e-2), so the defaults are deliberately larger.
TEMPLATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "logistic_regression": {
        "learning_rate": 0.05,
        "optimizer": "adam",
        "max_grad_norm": 1.0,
        "batch_size": 256,
        "epochs": 10,
    },
    "mlp": {
        "learning_rate": 0.01,
        "optimizer": "adam",
        "max_grad_norm": 1.0,
        "batch_size": 256,
        "epochs": 10,
    },
    # Tramer & Boneh train this CNN with DP-SGD momentum 0.9 and clipping norm 0.1. With
    # Opacus's mean reduction we use Adam; measured here at epsilon 3: 1e-2 gave 0.91 on
    # digits (8x8) and 0.9965 on 10k MNIST rows (3 epochs) against 0.71 and 0.9945 at 2e-3.
    "cnn": {
        "learning_rate": 0.01,
        "optimizer": "adam",
        "max_grad_norm": 0.1,
        "batch_size": 256,
        "epochs": 10,
    },
    "layers": {
        "learning_rate": 0.01,
        "optimizer": "adam",
        "max_grad_norm": 1.0,
        "batch_size": 256,
        "epochs": 10,
    },
}


def _locate(loc: Sequence[int | str]) -> tuple[int | None, str]:
    """Turn a pydantic error location into (layer index, dotted field name).

    Locations look like ``("layers", "layers", 2, "linear", "out_features")``: the
    first item is the spec's tag, the fourth the layer's tag; both are noise to a user.
    """
    parts = list(loc[1:]) if loc else []
    if len(parts) >= 2 and parts[0] == "layers" and isinstance(parts[1], int):
        rest = parts[2:]
        if rest and rest[0] in _LAYER_TAGS:
            rest = rest[1:]
        return parts[1], ".".join(str(p) for p in rest) or "type"
    return None, ".".join(str(p) for p in parts) or "model"


_LAYER_TAGS = {
    "flatten",
    "linear",
    "conv2d",
    "maxpool2d",
    "avgpool2d",
    "dropout",
    "relu",
    "tanh",
    "gelu",
    "groupnorm",
    "layernorm",
    "embedding",
}


def parse_model_spec(data: Any) -> AnyModelSpec:
    """Validate raw JSON-like input into a spec, or raise ``SpecError`` naming the field.

    ``details`` carries ``layer`` (index, when the problem is inside ``layers``),
    ``field`` and the full pydantic ``errors`` list (locations and messages only).
    """
    if isinstance(data, LayersSpec | LogisticRegressionTemplate | MlpTemplate | CnnTemplate):
        return data
    try:
        return _SPEC_ADAPTER.validate_python(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0]
        layer, field = _locate(tuple(first["loc"]))
        where = f"layer {layer}, field '{field}'" if layer is not None else f"field '{field}'"
        raise SpecError(
            f"invalid model spec at {where}: {first['msg']}",
            details={
                "layer": layer,
                "field": field,
                "errors": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors],
            },
        ) from None


def spec_to_dict(spec: AnyModelSpec) -> dict[str, Any]:
    """JSON-ready form of a validated spec (what travels in the model file)."""
    return spec.model_dump(mode="json", exclude_none=True)


#: Recipes measured per template and data kind (``"tabular"`` or ``"image"``, a dataset
#: description's ``kind``): a list of ``(largest epsilon, settings, evidence)``, the first
#: whose bound is at least the run's epsilon applies (``math.inf`` closes the list). The
#: settings override ``TEMPLATE_DEFAULTS``; ``evidence`` names the measurement. Only what
#: was measured is here (one torch thread, ``bench/accuracy.py --sweep ...``); a ``layers``
#: recipe serves any layer list and was measured on the founding MLP (``SEED_MLP``).
RECIPES: dict[str, dict[str, list[tuple[float, dict[str, Any], str]]]] = {
    "logistic_regression": {
        "tabular": [
            (
                math.inf,
                {"learning_rate": 0.01, "optimizer": "adam", "max_grad_norm": 0.5,
                 "batch_size": 256, "epochs": 20},
                "UCI Adult, bench/accuracy.py --sweep adult (mean of 2 per cell). Capital gain "
                "and loss on a log scale, age and hours declared categorical (lr 0.005-0.02, "
                "C 0.5/1, 20/30 epochs): 0.850 at epsilon 0.5 (0.845-0.851 across the grid) "
                "against 0.850 without privacy on that encoding. Capital on a log scale only "
                "(lr 0.01-0.05, batch 256/512, C 0.5/1, 10/20 epochs): 0.846 at 0.5 here, "
                "0.840-0.847 across the grid, 0.846-0.847 at 1 and 3 (lr 0.1: 0.836-0.843), "
                "against 0.845. All numbers linear (lr 0.003-0.3, batch 256/1024, adam/sgd, "
                "C 0.1/1/5, 10/30 epochs): 0.840 at 0.5 against 0.850; sgd below adam throughout",
            ),
        ],
    },
    "layers": {
        "image": [
            (
                2.0,
                {"learning_rate": 0.8, "optimizer": "sgd", "max_grad_norm": 1.0,
                 "batch_size": 2048, "epochs": 20},
                "MNIST, the founding MLP (SEED_MLP) as a layer list, 2,000 rows held out "
                "(trading.holdout_max_rows), bench/accuracy.py --sweep mnist-mlp at epsilon "
                "1.2 (sgd momentum 0.9, lr 0.5/0.8, batch 2048/4096, C 1, 20/30 epochs): 0.932 "
                "at batch 2048, 20 epochs, lr 0.8 (six runs 0.929-0.935, lr 0.5 six runs "
                "0.930-0.933; 0.924-0.932 elsewhere) against 0.975 without privacy. Holding out "
                "12,000 rows (a fifth) the best cell was 0.928 (sgd lr 0.3-0.7, batch "
                "1024-4096, C 1/2, 10-40 epochs; a cosine schedule, C 0.1 or an average of the "
                "iterates no better)",
            ),
            (
                math.inf,
                {"learning_rate": 0.8, "optimizer": "sgd", "max_grad_norm": 1.0,
                 "batch_size": 2048, "epochs": 40},
                "MNIST, the founding MLP (SEED_MLP) as a layer list, 2,000 rows held out "
                "(trading.holdout_max_rows), bench/accuracy.py --sweep mnist-mlp at epsilon 3 "
                "(sgd momentum 0.9, lr 0.5/0.8, batch 2048/4096, C 1, 40/60 epochs): 0.951 at "
                "batch 2048, 40 epochs, lr 0.8 (six runs 0.950-0.953; lr 0.5 six runs "
                "0.949-0.952; 0.943-0.952 elsewhere) against 0.975 without privacy. Holding "
                "out 12,000 rows the plateau was 0.945-0.950 (sgd lr 0.1-2 and adam "
                "0.002-0.01, batch 256-4096, C 0.1-2, 20-80 epochs)",
            ),
        ],
    },
    "cnn": {
        "image": [
            (
                math.inf,
                {"learning_rate": 0.5, "optimizer": "sgd", "max_grad_norm": 0.1,
                 "batch_size": 512, "epochs": 40},
                "Tramer & Boneh 2021's MNIST recipe for this CNN (SGD momentum 0.9, lr 0.5, "
                "batch 512, C 0.1, 40 epochs; 98.1% at epsilon 3): bought on the 60,000 MNIST "
                "images through the API, bench/accuracy.py --cases mnist-cnn, 98.02% at "
                "epsilon 3 and 97.00% at 1.2 against 98.98% without privacy (one thread, "
                "11-14 minutes a run)",
            ),
        ],
    },
}  # fmt: skip
DATA_KINDS = ("tabular", "image")


def _template_key(spec: Any) -> str:
    spec = parse_model_spec(spec)
    return spec.template if not isinstance(spec, LayersSpec) else "layers"


def template_defaults(
    spec: Any, data_kind: str | None = None, epsilon: float | None = None
) -> dict[str, Any]:
    """Suggested learning rate, optimizer, clipping norm, batch size and epochs
    (``spec`` raw or parsed): the template's defaults, or with ``data_kind`` (and
    ``epsilon``, the largest band when None) the measured recipe where there is one."""
    key = _template_key(spec)
    defaults = dict(TEMPLATE_DEFAULTS[key])
    found = recipe(spec, data_kind, epsilon) if data_kind is not None else None
    if found is not None:
        defaults.update(found[0])
    return defaults


def recipe(
    spec: Any, data_kind: str, epsilon: float | None = None
) -> tuple[dict[str, Any], str] | None:
    """The measured recipe (settings, evidence) for this template, data kind and epsilon,
    or None when none was measured."""
    if data_kind not in DATA_KINDS:
        raise SpecError(
            f"data kind must be one of {list(DATA_KINDS)}", details={"field": "data_kind"}
        )
    bands = RECIPES.get(_template_key(spec), {}).get(data_kind, [])
    target = math.inf if epsilon is None else float(epsilon)
    for bound, settings, evidence in bands:
        if target <= bound:
            return dict(settings), evidence
    return None


def expand_template(
    spec: AnyModelSpec, *, input_shape: Sequence[int], num_classes: int
) -> LayersSpec:
    """Rewrite a template as explicit layers for this input shape and class count."""
    if isinstance(spec, LayersSpec):
        return spec
    layers: list[dict[str, Any]]
    if isinstance(spec, LogisticRegressionTemplate):
        layers = [{"type": "flatten"}, {"type": "linear", "out_features": num_classes}]
    elif isinstance(spec, MlpTemplate):
        layers = [{"type": "flatten"}]
        for width in spec.hidden:
            layers += [{"type": "linear", "out_features": width}, {"type": spec.activation}]
            if spec.dropout > 0:
                layers.append({"type": "dropout", "p": spec.dropout})
        layers.append({"type": "linear", "out_features": num_classes})
    else:
        layers = _cnn_layers(spec, input_shape=input_shape, num_classes=num_classes)
    return LayersSpec.model_validate({"layers": layers})


def _cnn_layers(
    spec: CnnTemplate, *, input_shape: Sequence[int], num_classes: int
) -> list[dict[str, Any]]:
    if len(input_shape) != 3:
        raise SpecError(
            "the cnn template needs image input (channels, height, width)",
            details={"layer": None, "field": "template", "input_shape": list(input_shape)},
        )
    small = min(input_shape[1], input_shape[2]) < 16
    layers: list[dict[str, Any]] = []
    for i, channels in enumerate(spec.channels):
        if small:
            conv = {"type": "conv2d", "out_channels": channels, "kernel_size": 3, "padding": 1}
        elif i == 0:
            conv = {
                "type": "conv2d",
                "out_channels": channels,
                "kernel_size": 8,
                "stride": 2,
                "padding": 3,
            }
        else:
            conv = {"type": "conv2d", "out_channels": channels, "kernel_size": 4, "stride": 2}
        layers += [conv, {"type": "tanh"}, {"type": "maxpool2d", "kernel_size": 2, "stride": 1}]
    layers += [
        {"type": "flatten"},
        {"type": "linear", "out_features": spec.dense},
        {"type": "tanh"},
        {"type": "linear", "out_features": num_classes},
    ]
    return layers


class _AsIndices(nn.Module):
    """Casts float-coded token ids to ``long`` for an embedding; has no parameters.

    The clamp never changes a validated code (``build_model`` checked the vocabulary); it
    makes an out-of-range index impossible by construction rather than an error at run time.
    """

    def __init__(self, num_embeddings: int) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.nan_to_num(0.0).clamp(0, self.num_embeddings - 1).long()


class FiniteSequential(nn.Sequential):
    """``nn.Sequential`` whose every layer output has non-finite rows replaced by zeros.

    Why: a row that overflows (a huge weight times a large feature) would make the loss
    NaN and the update NaN: an outcome that depends on one row. Zeroing that row's
    activations keeps the row's contribution finite and a function of the row alone, so
    clipping bounds it as usual. It adds no parameters, so state-dict keys are those of a
    plain ``nn.Sequential``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = _finite_rows(module(x))
        return x


def _finite_rows(x: torch.Tensor) -> torch.Tensor:
    """Zero the rows whose sum is not finite: every row holding an inf or a NaN, and the
    (all-finite) rows whose sum overflows, which is still a rule on the row alone. One sum
    per row costs a fifth of ``isfinite(x).all(dim=1)`` on a 1024 x 105 batch."""
    if not x.is_floating_point() or x.dim() == 0:
        return x
    finite = torch.isfinite(x.reshape(x.shape[0], -1).sum(dim=1))
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return torch.where(finite.reshape(shape), x, torch.zeros((), dtype=x.dtype))


def _fail(index: int, field: str, message: str, **extra: Any) -> SpecError:
    return SpecError(
        f"layer {index} ({field}): {message}", details={"layer": index, "field": field, **extra}
    )


def _build_layer(
    index: int, layer: Any, shape: tuple[int, ...], vocabulary: int | None = None
) -> tuple[nn.Module, tuple[int, ...], int]:
    """One layer: its module, its output shape (no batch dim) and its parameter count."""
    if isinstance(layer, FlattenLayer):
        return nn.Flatten(), (math.prod(shape),), 0
    if isinstance(layer, LinearLayer):
        if len(shape) != 1:
            raise _fail(
                index, "type", f"linear needs flat input, got shape {list(shape)}; add a flatten"
            )
        n = shape[0] * layer.out_features + (layer.out_features if layer.bias else 0)
        return nn.Linear(shape[0], layer.out_features, bias=layer.bias), (layer.out_features,), n
    if isinstance(layer, Conv2dLayer):
        if len(shape) != 3:
            raise _fail(index, "type", f"conv2d needs (channels, height, width), got {list(shape)}")
        c, h, w = shape
        oh = (h + 2 * layer.padding - layer.kernel_size) // layer.stride + 1
        ow = (w + 2 * layer.padding - layer.kernel_size) // layer.stride + 1
        if oh < 1 or ow < 1:
            raise _fail(
                index,
                "kernel_size",
                f"kernel larger than the padded {h}x{w} input",
                shape=[c, h, w],
            )
        k = layer.kernel_size
        n = c * layer.out_channels * k * k + layer.out_channels
        module = nn.Conv2d(c, layer.out_channels, k, stride=layer.stride, padding=layer.padding)
        return module, (layer.out_channels, oh, ow), n
    if isinstance(layer, Pool2dLayer):
        if len(shape) != 3:
            raise _fail(index, "type", f"{layer.type} needs (channels, height, width)")
        c, h, w = shape
        stride = layer.stride or layer.kernel_size
        oh = (h - layer.kernel_size) // stride + 1
        ow = (w - layer.kernel_size) // stride + 1
        if oh < 1 or ow < 1:
            raise _fail(index, "kernel_size", f"pool window larger than the {h}x{w} input")
        cls = nn.MaxPool2d if layer.type == "maxpool2d" else nn.AvgPool2d
        return cls(layer.kernel_size, stride=stride), (c, oh, ow), 0
    if isinstance(layer, DropoutLayer):
        return nn.Dropout(layer.p), shape, 0
    if isinstance(layer, ActivationLayer):
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[layer.type]
        return act(), shape, 0
    if isinstance(layer, GroupNormLayer):
        if len(shape) < 2:
            raise _fail(index, "type", "groupnorm needs a channel axis (use layernorm on vectors)")
        if shape[0] % layer.num_groups:
            raise _fail(index, "num_groups", f"{shape[0]} channels are not divisible by num_groups")
        return nn.GroupNorm(layer.num_groups, shape[0]), shape, 2 * shape[0]
    if isinstance(layer, LayerNormLayer):
        return nn.LayerNorm(list(shape)), shape, 2 * math.prod(shape)
    if isinstance(layer, EmbeddingLayer):
        if index != 0 or len(shape) != 1:
            raise _fail(index, "type", "embedding must be the first layer, on a vector of ids")
        if vocabulary is None:
            raise _fail(
                index,
                "type",
                "embedding needs integer-coded input: a dataset whose feature columns are "
                "all categorical; scaled numbers or pixels are not indices",
            )
        if layer.num_embeddings < vocabulary:
            raise _fail(
                index,
                "num_embeddings",
                f"the dataset's categories need {vocabulary} embeddings, the spec has "
                f"{layer.num_embeddings}",
                vocabulary=vocabulary,
            )
        embedding = nn.Sequential(
            _AsIndices(layer.num_embeddings),
            nn.Embedding(layer.num_embeddings, layer.embedding_dim),
        )
        return (
            embedding,
            (shape[0], layer.embedding_dim),
            layer.num_embeddings * layer.embedding_dim,
        )
    raise _fail(index, "type", "layer type not in the allow-list")  # pragma: no cover


def uses_embedding(spec: Any) -> bool:
    """Whether the spec reads integer codes (its first layer is an embedding)."""
    parsed = parse_model_spec(spec)
    return isinstance(parsed, LayersSpec) and isinstance(parsed.layers[0], EmbeddingLayer)


def count_parameters(
    spec: Any, *, input_shape: Sequence[int], num_classes: int, vocabulary: int | None = None
) -> int:
    """Trainable parameters the spec would have, computed without allocating them."""
    layers = expand_template(
        parse_model_spec(spec), input_shape=input_shape, num_classes=num_classes
    )
    shape = tuple(int(s) for s in input_shape)
    total = 0
    with torch.device("meta"):
        for index, layer in enumerate(layers.layers):
            _, shape, n = _build_layer(index, layer, shape, vocabulary)
            total += n
    return total


#: The seed MLP: flatten, dense 128 ReLU, dropout 0.2, dense 10 (784 -> 128 -> 10 on 28x28
#: images). The demo buys it, the benchmarks train it and its parameter count is the time
#: estimate's reference work per sample (``seed_mlp_parameters``). Copy before changing it.
SEED_MLP: dict[str, list[dict[str, Any]]] = {
    "layers": [
        {"type": "flatten"},
        {"type": "linear", "out_features": 128},
        {"type": "relu"},
        {"type": "dropout", "p": 0.2},
        {"type": "linear", "out_features": 10},
    ]
}
#: The input the seed MLP's reference workload is defined on: one 28x28 grey image, 10 classes.
SEED_MLP_INPUT_SHAPE = (1, 28, 28)
SEED_MLP_CLASSES = 10


def seed_mlp_parameters() -> int:
    """Trainable parameters of the seed MLP on ``SEED_MLP_INPUT_SHAPE`` (101,770)."""
    return count_parameters(
        SEED_MLP, input_shape=SEED_MLP_INPUT_SHAPE, num_classes=SEED_MLP_CLASSES
    )


def build_model(
    spec: Any,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    max_parameters: int = DEFAULT_MAX_PARAMETERS,
    max_activations: int = DEFAULT_MAX_ACTIVATIONS,
    vocabulary: int | None = None,
) -> nn.Module:
    """Build a ``FiniteSequential`` from a spec (raw dict or parsed model).

    Args:
        spec: ``{"layers": [...]}`` or ``{"template": ...}`` (see ``ModelSpec``).
        input_shape: one example's shape from the public schema, e.g. ``(64,)`` for
            tabular features or ``(1, 28, 28)`` for images.
        num_classes: label categories declared by the dataset; the model's last
            layer must output exactly this many logits.
        max_parameters: cap from settings; checked before any memory is allocated.
        max_activations: cap on the values one example produces across all layers
            (memory per example, which parameters alone do not bound: a wide conv on a
            large image has few parameters and huge activations).
        vocabulary: for integer-coded input, the number of distinct codes (public, from
            the schema); None when the input is scaled numbers or pixels, and then an
            embedding layer is refused.

    Raises:
        SpecError: with ``details["layer"]`` and ``details["field"]`` naming the problem.
    """
    if not input_shape or any(int(s) < 1 for s in input_shape):
        raise SpecError("input shape must be non-empty and positive", details={"field": "input"})
    if num_classes < 2:
        raise SpecError("a classifier needs at least two classes", details={"field": "classes"})
    parsed = parse_model_spec(spec)
    layers = expand_template(parsed, input_shape=input_shape, num_classes=num_classes)
    shape = tuple(int(s) for s in input_shape)
    total = 0
    # Shapes and parameter counts first, on the meta device: a spec over the cap is
    # refused before a single real tensor is allocated.
    activations = 0
    with torch.device("meta"):
        for index, layer in enumerate(layers.layers):
            _, shape, n = _build_layer(index, layer, shape, vocabulary)
            total += n
            activations += math.prod(shape)
            if activations > max_activations:
                raise _fail(
                    index,
                    "type",
                    f"activations reach {activations} values per example by this layer, "
                    f"over the cap of {max_activations}",
                    max_activations=max_activations,
                )
    last = len(layers.layers) - 1
    if shape != (num_classes,):
        raise _fail(
            last,
            "out_features",
            f"the model must end with {num_classes} outputs (the dataset's classes), "
            f"it ends with shape {list(shape)}",
            expected=num_classes,
        )
    if total == 0:
        raise SpecError(
            "the model has no trainable layer", details={"layer": None, "field": "layers"}
        )
    if total > max_parameters:
        raise SpecError(
            f"the model has {total} parameters, over the cap of {max_parameters}",
            details={
                "layer": None,
                "field": "layers",
                "parameters": total,
                "max_parameters": max_parameters,
            },
        )
    modules: list[nn.Module] = []
    shape = tuple(int(s) for s in input_shape)
    for index, layer in enumerate(layers.layers):
        module, shape, _ = _build_layer(index, layer, shape, vocabulary)
        modules.append(module)
    return FiniteSequential(*modules)
