"""Book-keeping (BK) clipping: DP-SGD's clipped gradient sum from one backward pass.

After Bu, Wang, Zha and Karypis, "Differentially Private Optimization on Large Model at
Small Cost" (ICML 2023). For a layer with input activations ``a_i`` and output gradients
``g_i`` of sample ``i``, the per-sample weight gradient is ``a_i^T g_i`` (linear) or the
same after unfolding (conv). BK keeps ``(a, g)`` of every trainable layer during the one
backward pass, computes each sample's gradient norm from them the ghost way (``||a_i||
||g_i||`` for a 2-D linear layer, ``<a_i a_i^T, g_i g_i^T>`` for sequences and unfolded
convolutions, whichever of ghost or explicit is cheaper per layer), and then forms the
clipped sum directly, ``sum_i c_i a_i^T g_i = a^T (c * g)``: one matrix product per layer,
the cost of the ordinary weight gradient. Autograd never computes a weight gradient (each
supported layer runs through ``_BKFunction``, whose backward returns none for its
parameters), and no second backward runs, unlike Opacus's ghost clipping.

Built on Opacus's machinery: activations and output gradients are captured per module as
``GradSampleModule`` does (here inside the layer's autograd function, which also saves the
wasted weight gradient), the per-sample gradients of norm layers come from Opacus's own
grad samplers (``compute_layer_norm_grad_sample``, ``compute_group_norm_grad_sample``),
convolutions are unfolded by Opacus's ``unfold2d``, and the clipping factor is Opacus's
``C / (norm + 1e-6)`` capped at 1. Exactness against Opacus's per-sample hooks is tested
(tests/privacy/test_bk.py).

Supported: ``nn.Linear`` (input of any rank >= 2), ``nn.Conv2d`` (groups 1, zero padding
given as numbers), ``nn.Embedding`` (dense, no ``max_norm``, no ``padding_idx``),
``nn.LayerNorm`` and ``nn.GroupNorm``, each used once per forward pass. ``unsupported``
names the first module that is not; the trainer then falls back to ghost clipping.

The DP loss cannot be bypassed: ``BookkeepingDP.loss`` returns a ``DPLoss`` whose
``backward()`` arms the book for exactly one backward pass. A backward reaching a BK layer
from any other loss (``cross_entropy(model(x), y).backward()``) raises ``RuntimeError``:
there is no path that yields an unclipped gradient.

Gradients live in one flat buffer (each parameter's ``.grad`` is a view of it), so the
noise is one draw into a preallocated buffer of the same size per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from opacus.grad_sample.group_norm import compute_group_norm_grad_sample
from opacus.grad_sample.layer_norm import compute_layer_norm_grad_sample
from opacus.utils.tensor_utils import unfold2d
from torch import nn
from torch.nn import functional as F

__all__ = ["BK_LAYERS", "BookkeepingDP", "DPLoss", "unsupported"]

#: Layer types whose per-sample clipped gradient BK forms itself.
BK_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv2d,
    nn.Embedding,
    nn.LayerNorm,
    nn.GroupNorm,
)
#: Opacus's guard against a zero norm in ``C / (norm + eps)``.
CLIP_EPS = 1e-6


def _layer_problem(module: nn.Module) -> str | None:
    if type(module) not in BK_LAYERS:
        return f"{type(module).__name__} has parameters and no book-keeping rule"
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros":
            return "Conv2d with groups or non-zero padding"
        if isinstance(module.padding, str):
            return "Conv2d with named padding"
    if isinstance(module, nn.Embedding) and (
        module.sparse
        or module.max_norm is not None
        or module.padding_idx is not None
        or module.scale_grad_by_freq
    ):
        return "Embedding with sparse, max_norm, padding_idx or scale_grad_by_freq"
    return None


def unsupported(model: nn.Module) -> str | None:
    """Why BK cannot train ``model`` (a property of its layers, never of data), or None."""
    seen: set[int] = set()
    trainable = 0
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        problem = _layer_problem(module)
        if problem:
            return problem
        for p in own:
            if id(p) in seen:
                return "a parameter is shared between layers"
            seen.add(id(p))
            trainable += 1
    if not trainable:
        return "the model has no trainable parameter"
    return None


# -- the layers' forward and input gradient -------------------------------------------


def _forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, layer.weight, layer.bias)
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(
            x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups
        )
    if isinstance(layer, nn.Embedding):
        return F.embedding(x, layer.weight)
    if isinstance(layer, nn.LayerNorm):
        return F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
    assert isinstance(layer, nn.GroupNorm)
    return F.group_norm(x, layer.num_groups, layer.weight, layer.bias, layer.eps)


def _input_grad(layer: nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return g.matmul(layer.weight)
    if isinstance(layer, nn.Conv2d):
        from torch.nn.grad import conv2d_input

        return conv2d_input(
            x.shape, layer.weight, g, layer.stride, layer.padding, layer.dilation, layer.groups
        )
    # Norm layers: recompute with detached parameters (elementwise work, no weight grad).
    assert isinstance(layer, nn.LayerNorm | nn.GroupNorm)
    w = layer.weight.detach() if layer.weight is not None else None
    b = layer.bias.detach() if layer.bias is not None else None
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        if isinstance(layer, nn.LayerNorm):
            out = F.layer_norm(xr, layer.normalized_shape, w, b, layer.eps)
        else:
            assert isinstance(layer, nn.GroupNorm)
            out = F.group_norm(xr, layer.num_groups, w, b, layer.eps)
        (gx,) = torch.autograd.grad(out, xr, g)
    return gx


class _BKFunction(torch.autograd.Function):
    """A supported layer's forward; its backward books ``(a, g)`` and returns only the
    input's gradient (the parameters' gradients are formed, clipped, by the book)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: nn.Module, book: _Book, *params: Any) -> Any:
        ctx.layer = layer
        ctx.book = book
        ctx.params = len(params)
        ctx.save_for_backward(x)
        return _forward(layer, x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        (x,) = ctx.saved_tensors
        ctx.book.record(ctx.layer, x, g)
        gx = _input_grad(ctx.layer, x, g) if ctx.needs_input_grad[0] else None
        return (gx, None, None, *([None] * ctx.params))


def _bk_forward(layer: nn.Module, book: _Book, original: Callable[..., Any]) -> Callable[..., Any]:
    params = [p for p in layer.parameters(recurse=False) if p.requires_grad]

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not (layer.training and torch.is_grad_enabled()):
            return original(x)
        return _BKFunction.apply(x, layer, book, *params)

    return forward


# -- the book ---------------------------------------------------------------------------


class _Entry:
    """One layer's ``(a, g)`` of one backward pass: its per-sample squared gradient norms,
    then its clipped sum added into the layer's gradient views."""

    def __init__(
        self, layer: nn.Module, a: torch.Tensor, g: torch.Tensor, finite_input: bool
    ) -> None:
        self.layer = layer
        self.a = a
        self.g = g
        self.finite_input = finite_input
        self._samples: dict[str, torch.Tensor] = {}

    def sq_norms(self) -> torch.Tensor:
        layer, a, g = self.layer, self.a, self.g
        n = g.shape[0]
        if isinstance(layer, nn.Linear):
            if g.dim() == 2:
                gg = torch.linalg.vector_norm(g, dim=1).square()
                total = torch.linalg.vector_norm(a, dim=1).square() * gg
                return total + gg if layer.bias is not None else total
            a3 = a.reshape(n, -1, a.shape[-1])
            g3 = g.reshape(n, -1, g.shape[-1])
            total = self._matrix_sq_norms(g3, a3, time_major=True)
            if layer.bias is not None:
                total = total + g3.sum(1).pow(2).sum(1)
            return total
        if isinstance(layer, nn.Conv2d):
            cols = unfold2d(
                a,
                kernel_size=layer.kernel_size,
                padding=layer.padding,
                stride=layer.stride,
                dilation=layer.dilation,
            )  # (n, C k k, L)
            grads = g.reshape(n, g.shape[1], -1)  # (n, out, L)
            self.a = cols
            self.g = grads
            total = self._matrix_sq_norms(grads, cols, time_major=False)
            if layer.bias is not None:
                total = total + grads.sum(2).pow(2).sum(1)
            return total
        if isinstance(layer, nn.Embedding):
            ids = a.reshape(n, -1)
            rows = g.reshape(n, ids.shape[1], -1)
            same = (ids.unsqueeze(2) == ids.unsqueeze(1)).to(rows.dtype)
            return (same * torch.bmm(rows, rows.transpose(1, 2))).sum((1, 2)).clamp(min=0)
        sampler = (
            compute_layer_norm_grad_sample
            if isinstance(layer, nn.LayerNorm)
            else compute_group_norm_grad_sample
        )
        samples = sampler(layer, [a], g)
        total = torch.zeros(n, dtype=g.dtype)
        for name in ("weight", "bias"):
            p = getattr(layer, name)
            if p is not None and p in samples:
                self._samples[name] = samples[p]
                total = total + samples[p].reshape(n, -1).pow(2).sum(1)
        return total

    def _matrix_sq_norms(
        self, g: torch.Tensor, a: torch.Tensor, *, time_major: bool
    ) -> torch.Tensor:
        """``||sum_t g_t a_t^T||_F^2`` per sample: ghost (``<a a^T, g g^T>``, T x T) or
        explicit (the out x in matrix), whichever costs fewer multiplications."""
        if not time_major:  # (n, features, T) -> (n, T, features)
            g, a = g.transpose(1, 2), a.transpose(1, 2)
        t, p, d = g.shape[1], g.shape[2], a.shape[2]
        if t * (p + d) <= p * d:
            ggt = torch.bmm(g, g.transpose(1, 2))
            aat = torch.bmm(a, a.transpose(1, 2))
            return (ggt * aat).sum((1, 2)).clamp(min=0)
        return torch.bmm(g.transpose(1, 2), a).pow(2).sum((1, 2))

    def accumulate(self, c: torch.Tensor, grads: dict[int, torch.Tensor]) -> None:
        """Add ``sum_i c_i * grad_i`` into the layer's gradient views; a sample with
        ``c_i = 0`` (a non-finite norm) adds exactly zero."""
        layer, a, g = self.layer, self.a, self.g
        n = g.shape[0]
        weight = grads[id(layer.weight)]
        bias = grads.get(id(layer.bias)) if getattr(layer, "bias", None) is not None else None
        if isinstance(layer, nn.Linear | nn.Conv2d):
            shape = (n,) + (1,) * (g.dim() - 1)
            gc = torch.nan_to_num_(g * c.reshape(shape), nan=0.0, posinf=0.0, neginf=0.0)
            if not self.finite_input:  # 0 * inf would poison the sum: a row with c = 0 adds 0
                a = torch.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
            if isinstance(layer, nn.Linear):
                out, inp = weight.shape
                g2, a2 = gc.reshape(-1, out), a.reshape(-1, inp)
                weight.addmm_(g2.t(), a2)
                if bias is not None:
                    bias.add_(g2.sum(0))
            else:  # gc (n, out, L), a (n, C k k, L)
                w2 = weight.view(weight.shape[0], -1)
                w2.add_(torch.einsum("nol,nkl->ok", gc, a))
                if bias is not None:
                    bias.add_(gc.sum((0, 2)))
            return
        if isinstance(layer, nn.Embedding):
            ids = a.reshape(n, -1)
            rows = g.reshape(n, ids.shape[1], -1) * c.reshape(n, 1, 1)
            rows = torch.nan_to_num_(rows, nan=0.0, posinf=0.0, neginf=0.0)
            weight.index_add_(0, ids.reshape(-1), rows.reshape(-1, rows.shape[2]))
            return
        for name, view in (("weight", weight), ("bias", bias)):
            if view is None or name not in self._samples:
                continue
            samples = self._samples[name]
            shape = (n,) + (1,) * (samples.dim() - 1)
            scaled = torch.nan_to_num_(samples * c.reshape(shape), nan=0.0, posinf=0.0, neginf=0.0)
            view.add_(scaled.sum(0))


class _Book:
    """The ``(a, g)`` pairs of the backward pass in progress; records only while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.entries: list[_Entry] = []
        self.layers: set[int] = set()
        #: Layers whose input is finite by construction (``_finite_input_layers``).
        self.finite: set[int] = set()

    def record(self, layer: nn.Module, a: torch.Tensor, g: torch.Tensor) -> None:
        if not self.armed:
            raise RuntimeError(
                "book-keeping clipping: a backward pass ran outside the DP loss; per-sample "
                "clipping would be skipped, so it is refused (use BookkeepingDP.loss)"
            )
        if id(layer) in self.layers:
            raise NotImplementedError("book-keeping clipping: a layer ran twice in one pass")
        self.layers.add(id(layer))
        self.entries.append(_Entry(layer, a.detach(), g.detach(), id(layer) in self.finite))

    def clear(self) -> None:
        self.entries = []
        self.layers = set()


def _finite_input_layers(model: nn.Module) -> set[int]:
    """Layers whose input cannot hold a non-finite value, from the model's structure alone:
    an embedding (integer ids) and any child after the first of a ``FiniteSequential``
    (its input is the previous child's output with non-finite rows zeroed). The others
    (a model's first layer, layers of other containers) get their input cleaned before the
    clipped sum, so a non-finite row with coefficient 0 adds exactly 0."""
    from privacy.specs import FiniteSequential

    finite = {id(m) for m in model.modules() if isinstance(m, nn.Embedding)}
    for container in model.modules():
        if isinstance(container, FiniteSequential):
            finite.update(id(child) for child in list(container)[1:])
    return finite


class DPLoss:
    """The only loss that can train a BK model: per-sample cross-entropy, rows labelled
    ``ignore_index`` weigh zero, summed; ``backward()`` clips and accumulates."""

    def __init__(self, dp: BookkeepingDP, per_sample: torch.Tensor) -> None:
        self._dp = dp
        self._per_sample = per_sample

    def backward(self) -> None:
        self._dp._backward(self._per_sample)

    def item(self) -> float:
        return float(self._per_sample.detach().sum())


class BookkeepingDP:
    """A module trained with BK clipping: clipped sums, one flat noise draw, the step.

    Use: ``dp.zero_grad()``; for each physical batch of the logical batch,
    ``dp.loss(dp.module(x), y).backward()``; then ``dp.add_noise()`` (noise of standard
    deviation ``noise_multiplier * max_grad_norm`` on the sum, divided by
    ``expected_batch_size``, as Opacus's ``DPOptimizer``) and ``optimizer.step()``.

    ``module`` is modified in place (the trainer passes a copy). ``fault`` is the
    self-audit's injected fault (``skip_clipping``, ``no_noise``, ``half_noise``).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        max_grad_norm: float,
        noise_multiplier: float,
        expected_batch_size: int,
        noise_generator: torch.Generator,
        ignore_index: int = -100,
        fault: str | None = None,
    ) -> None:
        self.bytes_per_row = 0
        problem = unsupported(module)
        if problem:
            raise NotImplementedError(f"book-keeping clipping: {problem}")
        self.module = module
        self.max_grad_norm = float(max_grad_norm)
        self.noise_multiplier = float(noise_multiplier)
        if fault == "no_noise":
            self.noise_multiplier = 0.0
        elif fault == "half_noise":
            self.noise_multiplier /= 2
        self.skip_clipping = fault == "skip_clipping"
        self.expected_batch_size = max(1, int(expected_batch_size))
        self.generator = noise_generator
        self.ignore_index = ignore_index
        self.book = _Book()
        self.book.finite = _finite_input_layers(module)
        self.params = [p for p in module.parameters() if p.requires_grad]
        first = self.params[0]
        total = sum(p.numel() for p in self.params)
        self.flat_grad = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.noise = torch.empty_like(self.flat_grad)
        self.grads: dict[int, torch.Tensor] = {}
        offset = 0
        for p in self.params:
            view = self.flat_grad[offset : offset + p.numel()].view_as(p)
            self.grads[id(p)] = view
            p.grad = view
            offset += p.numel()
        for layer in module.modules():
            if any(p.requires_grad for p in layer.parameters(recurse=False)):
                layer.forward = _bk_forward(layer, self.book, layer.forward)

    def probe(self, input_shape: tuple[int, ...]) -> None:
        """One pass on zeros of the public input shape (no data): raises
        ``NotImplementedError`` when a layer runs twice per pass (shared weights, which
        the per-sample norms here do not cover). Leaves the gradient at zero."""
        x = torch.zeros((2, *input_shape), dtype=self.flat_grad.dtype)
        self.book.clear()
        self.book.armed = True
        try:
            self.loss(self.module(x), torch.zeros(2, dtype=torch.long))._per_sample.sum().backward()
        finally:
            self.book.armed = False
        # Memory per row of one pass: each layer's input (unfolded for a conv) and output
        # gradient, plus its per-row norm work (a T x T Gram pair or an out x in matrix).
        values = 0
        for entry in self.book.entries:
            entry.sq_norms()  # unfolds a conv's input, as a real pass does
            values += (entry.a.numel() + entry.g.numel()) // 2
            if entry.g.dim() == 3 and not isinstance(entry.layer, nn.Embedding):
                t = entry.g.shape[2] if isinstance(entry.layer, nn.Conv2d) else entry.g.shape[1]
                out_in = (entry.g[0].numel() // t) * (entry.a[0].numel() // t)
                values += min(2 * t * t, out_in)
        self.bytes_per_row = max(1, values) * self.flat_grad.element_size()
        self.book.clear()
        self.zero_grad()

    def zero_grad(self) -> None:
        self.flat_grad.zero_()
        for p in self.params:  # an optimizer's zero_grad(set_to_none) cannot detach them
            p.grad = self.grads[id(p)]

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> DPLoss:
        per_sample = F.cross_entropy(
            logits, target, reduction="none", ignore_index=self.ignore_index
        )
        return DPLoss(self, per_sample)

    def _backward(self, per_sample: torch.Tensor) -> None:
        self.book.clear()
        self.book.armed = True
        try:
            per_sample.sum().backward()
        finally:
            self.book.armed = False
        entries = self.book.entries
        self.book.clear()
        if not entries:
            return
        sq = entries[0].sq_norms()
        for entry in entries[1:]:
            sq = sq + entry.sq_norms()
        norms = sq.sqrt()  # every term is a sum of squares or clamped at 0
        self.last_norms = norms
        if self.skip_clipping:
            c = torch.ones_like(norms)
        else:
            c = (self.max_grad_norm / (norms + CLIP_EPS)).clamp_(max=1.0)
        c = torch.nan_to_num_(c, nan=0.0, posinf=0.0, neginf=0.0)
        for entry in entries:
            entry.accumulate(c, self.grads)

    def add_noise(self) -> None:
        """Noise the clipped sum with one flat draw and divide by the expected batch."""
        std = self.noise_multiplier * self.max_grad_norm
        if std > 0:
            torch.randn(self.noise.shape, generator=self.generator, out=self.noise)
            self.flat_grad.add_(self.noise, alpha=std)
        self.flat_grad.div_(self.expected_batch_size)
        for p in self.params:
            p.grad = self.grads[id(p)]

    @property
    def noise_std(self) -> float:
        """The standard deviation of each gradient coordinate's noise after scaling."""
        return self.noise_multiplier * self.max_grad_norm / self.expected_batch_size
