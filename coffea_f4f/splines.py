"""Fused passes of normflows' rational-quadratic spline layers: the same maths in fewer ops.

normflows (a port of nflows) evaluates each spline layer with boolean-mask gathers and
scatters of the in-range points, two softmaxes, seven gathers and, for the autoregressive
inverse, ``D`` full passes that each redo the whole network and every feature's spline. At the
batch sizes flows train with (128 to a few thousand events) those many small ops, not the
matrix products, take most of the CPU time (``benchmarks/train_speed.py``). This module
computes the same layers from the same parameters:

- :func:`rq_spline`: the spline with linear tails on every point (the input clamped to the
  interval, the identity selected outside it, no masks), one softmax for widths and heights
  together, the bin's two knots gathered directly, and the whole spline one autograd node
  whose backward is written out (about 55 recorded ops forward and twice that backward in
  plain autograd);
- :func:`autoregressive_pass`: a masked autoregressive spline layer. Data -> base (what
  density training differentiates) is one autograd node, MADE and spline together, with the
  backward written out; base -> data builds the masked weights and context terms once per
  call, and each pass of its ``D``-pass inverse evaluates only what the one feature it fixes
  depends on: the hidden units of lower degree, that feature's output rows and its spline;
- :func:`coupling_pass`: a coupling spline layer (its network as normflows runs it, the
  splines fused).

The layers keep their normflows modules and parameters (saved models are unchanged); only the
evaluation differs, within float rounding (tested against normflows at rtol 1e-12 in float64,
values, log-dets and gradients). Layers of another configuration (batch norm, permuted or
random masks, other tails) fall back to normflows. :func:`reference` switches the fast passes
off for comparisons.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator
from typing import Any

import normflows as nf
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "autoregressive_pass",
    "coupling_pass",
    "fast_enabled",
    "layer_pass",
    "reference",
    "rq_spline",
]

Result = tuple[torch.Tensor, torch.Tensor]

_STATE = {"fast": True}
_SUPPORTED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def reference() -> Iterator[None]:
    """Evaluate spline layers with normflows' own code inside the block (for comparisons)."""
    previous = _STATE["fast"]
    _STATE["fast"] = False
    try:
        yield
    finally:
        _STATE["fast"] = previous


def fast_enabled() -> bool:
    """Whether the fused passes are in use (False inside :func:`reference`)."""
    return _STATE["fast"]


def _softmax(u: torch.Tensor) -> torch.Tensor:
    # over the few bins of the last axis; cheaper than F.softmax's generic kernel there
    e = torch.exp(u - u.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def rq_spline(
    x: torch.Tensor,
    wh: torch.Tensor,
    ud: torch.Tensor,
    *,
    tail_bound: float,
    inverse: bool,
    min_bin_width: float,
    min_bin_height: float,
    min_derivative: float,
) -> Result:
    """Rational-quadratic spline on ``[-B, B]`` with identity (linear) tails, elementwise.

    Args:
        x: points, any shape ``S``.
        wh: unnormalised bin widths and heights, shape ``S + (2, K)`` (widths first).
        ud: unnormalised derivatives at the ``K - 1`` inner knots, shape ``S + (K - 1,)``.
        tail_bound: ``B``.
        inverse: evaluate the inverse spline.

    Returns:
        ``(y, log|dy/dx|)`` elementwise, both of shape ``S``; outside ``[-B, B]`` the identity
        with log-det 0. The same numbers as normflows' ``unconstrained_rational_quadratic_spline``
        with ``tails="linear"`` up to rounding.
    """
    return _Spline.apply(
        x, wh, ud, float(tail_bound), bool(inverse), min_bin_width, min_bin_height, min_derivative
    )


class _Spline(torch.autograd.Function):
    """The whole spline as one autograd node, its derivatives written out.

    Autograd would record about 55 ops forward and twice that backward per call (the knots
    from the softmax and cumulative sum, the bin lookup, the segment's algebra); here the
    forward runs untracked and the backward is one pass of closed-form partials (checked by
    ``torch.autograd.gradcheck`` in ``tests/test_splines.py``).

    Segment of a point's bin, with knot ``(x_k, y_k)``, width ``w``, height ``h``, knot
    derivatives ``d0, d1``, ``s = h/w``, ``theta = (x - x_k)/w``, ``t = theta (1 - theta)``,
    ``den = s + (d0 + d1 - 2 s) t`` and ``N = s theta^2 + d0 t``: ``y = y_k + h N / den``
    and ``log dy/dx = log(s^2 M) - 2 log den`` with ``M = d1 theta^2 + 2 s t + d0 (1-theta)^2``.
    The inverse solves the quadratic for ``theta`` and differentiates implicitly
    (``d theta / d p = -(dy/dp) / (dy/d theta)``).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, wh: torch.Tensor, ud: torch.Tensor, *setup: Any) -> Any:
        # setup: tail bound, inverse, minimal bin width, bin height, derivative
        y, lad, spline = _spline_forward(x, wh, ud, *setup)
        _save(ctx, spline)
        return y, lad

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_out: torch.Tensor, g_lad: torch.Tensor) -> Any:
        g_x, g_wh, g_ud = _spline_backward(_saved(ctx), g_out, g_lad)
        return g_x, g_wh, g_ud, None, None, None, None, None


def _save(ctx: Any, tree: Any) -> None:
    """Keep a nested tuple/list of tensors (and constants) for backward through
    ``save_for_backward``, so that autograd frees them after the backward and refuses a
    second backward without ``retain_graph``."""
    tensors: list[torch.Tensor] = []

    def strip(node: Any) -> Any:
        if isinstance(node, (tuple, list)):
            return type(node)(strip(v) for v in node)
        if isinstance(node, torch.Tensor):
            tensors.append(node)
            return _SLOT
        return node

    ctx.layout = strip(tree)
    ctx.save_for_backward(*tensors)


def _saved(ctx: Any) -> Any:
    """The tree given to :func:`_save`, its tensors back in place."""
    tensors = iter(ctx.saved_tensors)

    def fill(node: Any) -> Any:
        if isinstance(node, (tuple, list)):
            return type(node)(fill(v) for v in node)
        return next(tensors) if node is _SLOT else node

    return fill(ctx.layout)


_SLOT = object()


def _spline_forward(
    x: torch.Tensor,
    wh: torch.Tensor,
    ud: torch.Tensor,
    bound: float,
    inverse: bool,
    min_w: float,
    min_h: float,
    min_d: float,
) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]]:
    """The spline's values and log-dets, and what its backward needs (see _Spline)."""
    k = wh.shape[-1]
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    mins = wh.new_tensor([min_w, min_h])[:, None]
    spread = 1 - mins * k  # the softmax's share of each width (height) after the minimum
    soft = _softmax(wh)
    sizes = mins + spread * soft
    # knots: -B, the inner cumulative sums, B (ends exact, as normflows sets them)
    inner = (2 * bound) * torch.cumsum(sizes[..., :-1], dim=-1) - bound
    knots = F.pad(F.pad(inner, (1, 0), value=-bound), (0, 1), value=bound)
    end = math.log(math.expm1(1 - min_d))  # softplus(end) + min_d == 1
    v = F.pad(ud, (1, 1), value=end)
    deriv = min_d + F.softplus(v)  # S + (K+1,)
    # the bin: how many inner knots (of x forward, of y inverse) lie at or below the point
    side = 1 if inverse else 0
    idx = (xc[..., None] >= knots[..., side, 1:k]).sum(-1, keepdim=True)  # S + (1,)
    ends = torch.cat((idx, idx + 1), -1)  # the bin's two knots, S + (2,)
    kk = knots.gather(-1, ends[..., None, :].expand(*ends.shape[:-1], 2, 2))  # S + (2, 2)
    dd = deriv.gather(-1, ends)
    left, right = kk.unbind(-1)
    picked = torch.stack(
        (left[..., 0], (right - left)[..., 0], left[..., 1], (right - left)[..., 1]), -1
    )
    picked = torch.cat((picked, dd), -1)  # x_k, w, y_k, h, d_k, d_k+1
    out, lad, theta = _segment(xc, picked, inverse)
    saved = (inside, ends, theta, picked, soft, v, spread, bound, inverse)
    return torch.where(inside, out, x), torch.where(inside, lad, torch.zeros_like(lad)), saved


def _spline_backward(
    saved: tuple[Any, ...], g_out: torch.Tensor, g_lad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the spline w.r.t. ``x``, ``wh`` and ``ud`` (see _Spline)."""
    inside, ends, theta, picked, soft, v, spread, bound, inverse = saved
    k = soft.shape[-1]
    zero = torch.zeros_like(g_out)
    g_in, g_lad_in = torch.where(inside, g_out, zero), torch.where(inside, g_lad, zero)
    g_seg, g_picked = _segment_grads(theta, picked, g_in, g_lad_in, inverse)
    g_x = torch.where(inside, g_seg, g_out)
    # back to the bin's two knots (w = right - left, h likewise) and derivatives
    g_cw, g_w, g_ch, g_h, g_d0, g_d1 = g_picked.unbind(-1)
    g_kk = torch.stack((torch.stack((g_cw - g_w, g_w), -1), torch.stack((g_ch - g_h, g_h), -1)), -2)
    shape = (*soft.shape[:-1], k + 1)
    g_knots = soft.new_zeros(shape).scatter_add_(
        -1, ends[..., None, :].expand(*ends.shape[:-1], 2, 2), g_kk
    )
    g_deriv = v.new_zeros(v.shape).scatter_add_(-1, ends, torch.stack((g_d0, g_d1), -1))
    g_inner = (2 * bound) * g_knots[..., 1:k]  # S + (2, K-1): the ends are constants
    # the inner knots are cumulative sums of the first K-1 normalised sizes
    g_norm = F.pad(torch.flip(torch.cumsum(torch.flip(g_inner, (-1,)), -1), (-1,)), (0, 1))
    g_soft = spread * g_norm
    g_wh = soft * (g_soft - (g_soft * soft).sum(-1, keepdim=True))
    g_ud = (g_deriv * torch.sigmoid(v))[..., 1:-1]
    return g_x, g_wh, g_ud


def _segment(xc: torch.Tensor, picked: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, ...]:
    """Values, log-dets and ``theta`` of the points on their bins' segments (see _Spline)."""
    cw, w, ch, h, d0, d1 = picked.unbind(-1)
    s = h / w
    slope = d0 + d1 - 2 * s
    if inverse:
        dy = xc - ch
        a = dy * slope + h * (s - d0)
        b = h * d0 - dy * slope
        c = -s * dy
        theta = (2 * c) / (-b - torch.sqrt(b * b - 4 * a * c))
        out = theta * w + cw
    else:
        theta = (xc - cw) / w
    t = theta * (1 - theta)
    den = s + slope * t
    m = d1 * theta * theta + 2 * s * t + d0 * (1 - theta) * (1 - theta)
    lad = torch.log(s * s * m) - 2 * torch.log(den)
    if inverse:
        lad = -lad
    else:
        out = ch + h * (s * theta * theta + d0 * t) / den
    return out, lad, theta


def _segment_grads(
    theta: torch.Tensor,
    picked: torch.Tensor,
    g_out: torch.Tensor,
    g_lad: torch.Tensor,
    inverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the segment w.r.t. the point and the six bin quantities (see _Spline)."""
    _, w, _, h, d0, d1 = picked.unbind(-1)
    s = h / w
    slope = d0 + d1 - 2 * s
    one_m = 1 - theta
    t = theta * one_m
    tp = 1 - 2 * theta  # dt / d theta
    den = s + slope * t
    n = s * theta * theta + d0 * t
    m = d1 * theta * theta + 2 * s * t + d0 * one_m * one_m
    hd2 = h / (den * den)
    den_th = slope * tp
    # partials of y = y_k + h N / den and of L = log(s^2 M) - 2 log den
    y_th = hd2 * ((2 * s * theta + d0 * tp) * den - n * den_th)
    y_s = hd2 * (theta * theta * den - n * (1 - 2 * t))
    y_h = n / den
    y_d0 = hd2 * t * (den - n)
    y_d1 = -hd2 * n * t
    l_th = 2 * (d1 * theta - d0 * one_m + s * tp) / m - 2 * den_th / den
    l_s = 2 / s + 2 * t / m - 2 * (1 - 2 * t) / den
    l_d0 = one_m * one_m / m - 2 * t / den
    l_d1 = theta * theta / m - 2 * t / den
    if inverse:  # x = theta w + x_k, log-det -L; theta implicit in y
        k = (g_out * w - g_lad * l_th) / y_th
        g_x = k
        g_ch = -k
        g_s = -k * y_s - g_lad * l_s
        g_h = -k * y_h + g_s / w
        g_d0 = -k * y_d0 - g_lad * l_d0
        g_d1 = -k * y_d1 - g_lad * l_d1
        g_w = g_out * theta - g_s * s / w
        g_cw = g_out
    else:  # theta = (x - x_k) / w
        g_th = g_out * y_th + g_lad * l_th
        g_s = g_out * y_s + g_lad * l_s
        g_x = g_th / w
        g_cw = -g_x
        g_w = -(g_th * theta + g_s * s) / w
        g_ch = g_out
        g_h = g_out * y_h + g_s / w
        g_d0 = g_out * y_d0 + g_lad * l_d0
        g_d1 = g_out * y_d1 + g_lad * l_d1
    return g_x, torch.stack((g_cw, g_w, g_ch, g_h, g_d0, g_d1), -1)


def _spline_kwargs(module: Any) -> dict[str, Any]:
    return {
        "tail_bound": module.tail_bound,
        "min_bin_width": module.min_bin_width,
        "min_bin_height": module.min_bin_height,
        "min_derivative": module.min_derivative,
    }


class _Made:
    """A MADE's masked weights and context terms, built once for all passes of one call.

    With ``by_degree`` the hidden units are reordered by their degree (the same function):
    the units that feature ``i``'s outputs see are then the first ``counts[i]``, and
    :meth:`feature` reads them as slices.
    """

    def __init__(self, net: Any, context: torch.Tensor | None, *, by_degree: bool = False) -> None:
        first, last = net.initial_layer, net.final_layer
        order, self.counts = _unit_order(net) if by_degree else (None, [])

        def rows(t: torch.Tensor) -> torch.Tensor:
            return t if order is None else t.index_select(0, order)

        def cols(t: torch.Tensor) -> torch.Tensor:
            return t if order is None else t.index_select(-1, order)

        w0, b0 = rows(first.weight * first.mask), rows(first.bias)
        self.first = (w0, b0)
        self.gates: list[torch.Tensor | None] = [None] * len(net.blocks)
        self.first_context = None
        if context is not None:
            # the context's terms of the first layer and of every block's gate in one product
            ctx_layers = [net.context_layer, *(block.context_layer for block in net.blocks)]
            wc = torch.cat([rows(layer.weight) for layer in ctx_layers])
            bc = torch.cat([rows(layer.bias) for layer in ctx_layers])
            width = len(b0)
            terms = F.linear(context, wc, bc)
            self.gates = list(torch.sigmoid(terms[:, width:]).split(width, 1))
            if order is None:  # the single pass: inputs and context through one product
                self.first = (torch.cat((w0, wc[:width]), 1), b0 + bc[:width])
            else:  # the D passes share it: first-layer bias and context term, once
                self.first_context = terms[:, :width] + b0
        self.blocks = []
        for block in net.blocks:
            l0, l1 = block.linear_layers
            self.blocks.append(
                (
                    block,
                    cols(rows(l0.weight * l0.mask)),
                    rows(l0.bias),
                    cols(rows(l1.weight * l1.mask)),
                    rows(l1.bias),
                )
            )
        self.last = (cols(last.weight * last.mask), last.bias)
        self.context = context

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """All outputs (the single-pass direction)."""
        inputs = x if self.context is None else torch.cat((x, self.context), 1)
        h = F.linear(inputs, *self.first)
        for (block, w0, b0, w1, b1), gate in zip(self.blocks, self.gates, strict=True):
            t = F.linear(block.activation(h), w0, b0)
            t = F.linear(block.dropout(block.activation(t)), w1, b1)
            h = h + t if gate is None else torch.addcmul(h, t, gate)
        return F.linear(h, *self.last)

    def feature(self, i: int, prev: torch.Tensor, per: int) -> torch.Tensor:
        """The ``per`` outputs of feature ``i`` (0-based) from features ``0..i-1`` (``prev``,
        shape ``(n, i)``), through the hidden units of degree <= ``i`` only (needs
        ``by_degree``).

        MADE's masks make these exactly the units feature ``i`` sees: an output of degree
        ``i + 1`` reads units of lower degree, a unit reads units of its degree or lower and
        the inputs of its degree or lower (so features ``0..i-1``). The other units multiply
        by masked zeros; leaving them out changes nothing but the work (the ``D``-pass inverse
        does about 2/5 of the full passes' products at ``D = 5``).
        """
        w, b = self.last
        rows = slice(i * per, (i + 1) * per)
        u = self.counts[i]
        if not u:
            return b[rows].expand(len(prev), per)
        w0, b0 = self.first
        if self.first_context is None:
            h = F.linear(prev, w0[:u, :i], b0[:u])
        else:
            h = torch.addmm(self.first_context[:, :u], prev, w0[:u, :i].t())
        for (block, wa, ba, wb, bb), gate in zip(self.blocks, self.gates, strict=True):
            t = F.linear(block.activation(h), wa[:u, :u], ba[:u])
            t = F.linear(block.dropout(block.activation(t)), wb[:u, :u], bb[:u])
            h = h + t if gate is None else torch.addcmul(h, t, gate[:, :u])
        return F.linear(h, w[rows, :u], b[rows])


_ORDERS: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, list[int]]] = (
    weakref.WeakKeyDictionary()
)


def _unit_order(net: nn.Module) -> tuple[torch.Tensor, list[int]]:
    """Hidden units sorted by degree, and how many have degree <= i for each feature i."""
    first: Any = net.initial_layer
    degrees: Any = first.degrees
    cached = _ORDERS.get(net)
    if cached is None or cached[0].device != degrees.device:
        values = degrees.tolist()
        order = torch.as_tensor(sorted(range(len(values)), key=values.__getitem__))
        counts = [sum(v <= i for v in values) for i in range(int(first.in_features))]
        cached = (order.to(degrees.device), counts)
        _ORDERS[net] = cached
    return cached


def _made_supported(net: Any) -> bool:
    if not isinstance(net.preprocessing, nn.Identity) or not len(net.blocks):
        return False
    d = net.initial_layer.in_features
    for block in net.blocks:
        if not isinstance(block, nf.nets.made.MaskedResidualBlock) or block.use_batch_norm:
            return False
    last = net.final_layer.degrees.cpu()
    per = len(last) // d
    return bool(torch.equal(last, torch.arange(1, d + 1).repeat_interleave(per)))


def _fusable(net: Any, context: torch.Tensor | None) -> bool:
    """Whether :class:`_AutoregressiveToBase` computes this MADE (ReLU, no active dropout)."""
    if context is not None and not hasattr(net, "context_layer"):
        return False
    return all(
        isinstance(b.activation, nn.ReLU)
        and not b.activation.inplace  # normflows' in-place ReLU also changes the residual
        and (b.dropout.p == 0 or not b.dropout.training)
        for b in net.blocks
    )


def _autoregressive_supported(layer: Any) -> bool:
    m = getattr(layer, "mprqat", None)
    return (
        m is not None
        and m.tails == "linear"
        and not torch.is_tensor(m.tail_bound)
        and not hasattr(m.autoregressive_net, "hidden_features")
        and _made_supported(m.autoregressive_net)
    )


def _relu_back(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.threshold_backward(g, out, 0)


def _layer_parameters(net: Any, ctx: bool) -> list[torch.Tensor]:
    """A MADE's parameters in the order :class:`_AutoregressiveToBase` takes them."""
    out = [net.initial_layer.weight, net.initial_layer.bias]
    if ctx:
        out += [net.context_layer.weight, net.context_layer.bias]
    for block in net.blocks:
        l0, l1 = block.linear_layers
        out += [l0.weight, l0.bias, l1.weight, l1.bias]
        if ctx:
            out += [block.context_layer.weight, block.context_layer.bias]
    return [*out, net.final_layer.weight, net.final_layer.bias]


class _AutoregressiveToBase(torch.autograd.Function):
    """A masked autoregressive spline layer's data -> base pass as one autograd node.

    The MADE (masked first layer; residual blocks ``h + g * L1(relu(L0(relu(h))))`` whose
    gate is ``g = sigmoid(W_c c + b_c)`` when conditional, ``g = 1`` otherwise; masked last
    layer) and the spline run untracked. The backward is the chain rule written out: two
    products and a bias sum per linear layer, the masks applied to the weight gradients
    (normflows multiplies ``W * mask`` in its forward), ReLU's backward from its output's
    sign, the gate through ``sigmoid' = g (1 - g)``; the weights' gradients are skipped when
    none is wanted (a frozen density used as a morph's base). Autograd recorded about 50 ops
    forward and 115 backward per layer besides the spline; this dispatches 1368 ops per
    density step at the paper's size instead of 1566 (DESIGN-NOTES "Training speed").
    Checked against normflows' autograd (values and every gradient, rtol 1e-9 in float64)
    and by ``gradcheck`` in ``tests/test_splines.py``.
    """

    @staticmethod
    def forward(ctx: Any, plan: Any, x: torch.Tensor, context: Any, *params: Any) -> Any:
        net, spline_args = plan
        n, d = x.shape
        conditional = context is not None
        it = iter(params)
        w0, b0 = next(it), next(it)
        first_w, first_b, inp = w0 * net.initial_layer.mask, b0, x
        if conditional:
            wc, bc = next(it), next(it)
            first_w, first_b = torch.cat((first_w, wc), 1), b0 + bc
            inp = torch.cat((x, context), 1)
        blocks = []  # (masked W0, b0, masked W1, b1) per residual block
        gate_terms = []
        for block in net.blocks:
            l0, l1 = block.linear_layers
            blocks.append((next(it) * l0.mask, next(it), next(it) * l1.mask, next(it)))
            if conditional:
                gate_terms.append((next(it), next(it)))
        last_w, last_b = next(it) * net.final_layer.mask, next(it)
        gates: list[Any] = [None] * len(blocks)
        gate_w = None
        if conditional:
            gate_w = torch.cat([w for w, _ in gate_terms])
            gate_b = torch.cat([b for _, b in gate_terms])
            pre = torch.addmm(gate_b, context, gate_w.t())
            gates = list(torch.sigmoid(pre).split(len(b0), 1))
        h = torch.addmm(first_b, inp, first_w.t())
        acts = []
        for (wa, ba, wb, bb), gate in zip(blocks, gates, strict=True):
            a = torch.relu(h)
            r = torch.relu(torch.addmm(ba, a, wa.t()))
            u = torch.addmm(bb, r, wb.t())
            h = h + u if gate is None else torch.addcmul(h, u, gate)
            acts.append((a, r, u))
        per = len(last_b) // d
        k = (per + 1) // 3
        p = torch.addmm(last_b, h, last_w.t()).view(n, d, per)
        wh = p[..., : 2 * k].unflatten(-1, (2, k))
        y, lad, spline = _spline_forward(x, wh, p[..., 2 * k :], *spline_args)
        ctx.net = net
        _save(ctx, (inp, first_w, blocks, gates, gate_w, acts, h, last_w, context, spline))
        return y, lad.sum(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_y: torch.Tensor, g_ld: torch.Tensor) -> Any:
        net = ctx.net
        inp, first_w, blocks, gates, gate_w, acts, h, last_w, context, spline = _saved(ctx)
        needs = ctx.needs_input_grad
        n, d = g_y.shape
        weights = any(needs[3:])
        g_x, g_wh, g_ud = _spline_backward(spline, g_y, g_ld[:, None].expand(n, d))
        g_p = torch.cat((g_wh.flatten(-2), g_ud), -1).view(n, -1)
        g_h = g_p @ last_w
        g_blocks: list[Any] = [None] * len(blocks)
        g_pre: list[Any] = [None] * len(blocks)
        for j in reversed(range(len(blocks))):
            (wa, _, wb, _), gate, (a, r, u) = blocks[j], gates[j], acts[j]
            g_u = g_h if gate is None else g_h * gate
            if gate is not None:
                g_pre[j] = g_h * u * gate * (1 - gate)
            g_t = _relu_back(g_u @ wb, r)
            if weights:
                l0, l1 = net.blocks[j].linear_layers
                g_blocks[j] = (
                    (g_t.t() @ a) * l0.mask,
                    g_t.sum(0),
                    (g_u.t() @ r) * l1.mask,
                    g_u.sum(0),
                )
            g_h = g_h + _relu_back(g_t @ wa, a)
        g_in = g_x + g_h @ first_w[:, :d] if needs[1] else None
        g_c = g_gate = None
        if context is not None:
            g_gate = torch.cat(g_pre, 1)
            if needs[2]:
                g_c = g_h @ first_w[:, d:] + g_gate @ gate_w
        if not weights:
            return None, g_in, g_c, *([None] * (len(needs) - 3))
        g_first = g_h.t() @ inp
        g_b = g_h.sum(0)
        grads: list[Any] = [g_first[:, :d] * net.initial_layer.mask, g_b]
        gate_grads: list[Any] = [None] * len(blocks)
        if g_gate is not None:
            assert context is not None
            grads += [g_first[:, d:], g_b]
            width = g_h.shape[1]
            gate_grads = list(
                zip(
                    (g_gate.t() @ context).split(width, 0),
                    g_gate.sum(0).split(width, 0),
                    strict=True,
                )
            )
        for g_block, g_gt in zip(g_blocks, gate_grads, strict=True):
            grads += [*g_block, *(g_gt or ())]
        grads += [(g_p.t() @ h) * net.final_layer.mask, g_p.sum(0)]
        return None, g_in, g_c, *grads


def autoregressive_pass(
    layer: nf.flows.AutoregressiveRationalQuadraticSpline,
    x: torch.Tensor,
    context: torch.Tensor | None,
    *,
    to_base: bool,
) -> Result:
    """One masked autoregressive spline layer: data -> base (``to_base``, one network pass)
    or base -> data (``D`` passes, each fixing one feature). Returns ``(values, log|det|)``."""
    m = layer.mprqat
    k = m.num_bins
    per = 3 * k - 1
    n, d = x.shape
    net = m.autoregressive_net
    if to_base and _fusable(net, context):
        spline = (float(m.tail_bound), False, m.min_bin_width, m.min_bin_height, m.min_derivative)
        weights = _layer_parameters(net, context is not None)
        return _AutoregressiveToBase.apply((net, spline), x, context, *weights)
    made = _Made(net, context, by_degree=not to_base)
    kw = _spline_kwargs(m)
    if to_base:
        params = made(x).view(n, d, per)
        wh = params[..., : 2 * k].unflatten(-1, (2, k))
        y, lad = rq_spline(x, wh, params[..., 2 * k :], inverse=False, **kw)
        return y, lad.sum(1)
    cols: list[torch.Tensor] = []
    logdet = x.new_zeros(n)
    for i in range(d):
        prev = torch.stack(cols, 1) if cols else x.new_zeros(n, 0)
        params = made.feature(i, prev, per)
        wh = params[:, : 2 * k].unflatten(-1, (2, k))
        xi, lad = rq_spline(x[:, i], wh, params[:, 2 * k :], inverse=True, **kw)
        cols.append(xi)
        logdet = logdet + lad
    return torch.stack(cols, 1), logdet


def _coupling_supported(layer: Any) -> bool:
    c = getattr(layer, "prqct", None)
    if c is None or c.tails != "linear" or torch.is_tensor(c.tail_bound):
        return False
    u = c.unconditional_transform
    if u is not None and (u.tails != "linear" or torch.is_tensor(u.tail_bound)):
        return False
    return hasattr(c.transform_net, "hidden_features")


def _elementwise_cdf(cdf: Any, x: torch.Tensor, inverse: bool) -> Result:
    """normflows' unconditional spline (parameters shared by all events)."""
    n = len(x)
    wh = torch.stack((cdf.unnormalized_widths, cdf.unnormalized_heights), -2)
    wh = wh.expand(n, *wh.shape)
    ud = cdf.unnormalized_derivatives.expand(n, *cdf.unnormalized_derivatives.shape)
    y, lad = rq_spline(x, wh, ud, inverse=inverse, **_spline_kwargs(cdf))
    return y, lad.sum(1)


def coupling_pass(
    layer: nf.flows.CoupledRationalQuadraticSpline,
    x: torch.Tensor,
    context: torch.Tensor | None,
    *,
    to_base: bool,
) -> Result:
    """One coupling spline layer (either direction is one network pass)."""
    c = layer.prqct
    k = c.num_bins
    n = len(x)
    ident, trans = x[:, c.identity_features], x[:, c.transform_features]
    logdet = x.new_zeros(n)
    u = c.unconditional_transform
    if u is not None and not to_base:  # base -> data: normflows' inverse undoes it first
        ident, lad = _elementwise_cdf(u, ident, inverse=True)
        logdet = logdet + lad
    params = c.transform_net(ident, context).reshape(n, len(c.transform_features), 3 * k - 1)
    wh = params[..., : 2 * k].unflatten(-1, (2, k)) / math.sqrt(c.transform_net.hidden_features)
    out, lad = rq_spline(trans, wh, params[..., 2 * k :], inverse=not to_base, **_spline_kwargs(c))
    logdet = logdet + lad.sum(1)
    if u is not None and to_base:
        ident, lad = _elementwise_cdf(u, ident, inverse=False)
        logdet = logdet + lad
    order = torch.cat((c.identity_features, c.transform_features)).argsort()
    return torch.cat((ident, out), 1)[:, order], logdet


def _supported(layer: nn.Module, check: Any) -> bool:
    ok = _SUPPORTED.get(layer)
    if ok is None:
        ok = _SUPPORTED[layer] = bool(check(layer))
    return ok


def layer_pass(
    layer: nn.Module, x: torch.Tensor, context: torch.Tensor | None, *, to_base: bool
) -> Result:
    """One layer of a flow in either direction: the fused pass where the layer supports it,
    normflows' own ``inverse`` (data -> base) or ``forward`` (base -> data) otherwise."""
    if _STATE["fast"] and x.dim() == 2 and len(x):
        if isinstance(layer, nf.flows.AutoregressiveRationalQuadraticSpline) and _supported(
            layer, _autoregressive_supported
        ):
            return autoregressive_pass(layer, x, context, to_base=to_base)
        if isinstance(layer, nf.flows.CoupledRationalQuadraticSpline) and _supported(
            layer, _coupling_supported
        ):
            return coupling_pass(layer, x, context, to_base=to_base)
    fn: Any = layer.inverse if to_base else layer
    return fn(x, context=context)
