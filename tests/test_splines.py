"""The fused spline passes against normflows' own evaluation of the same layers (float64)."""

import math

import normflows as nf
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coffea_f4f import flows, splines
from coffea_f4f.config import FlowConfig

CASES = [
    ("autoregressive", 1, 0),
    ("autoregressive", 2, 0),
    ("autoregressive", 5, 0),
    ("autoregressive", 5, 2),
    ("autoregressive", 3, 1),
    ("coupling", 2, 0),
    ("coupling", 5, 0),
    ("coupling", 5, 2),
    ("coupling", 3, 1),
]
DIRECTIONS = [flows.to_base, flows.from_base]


def perturbed_flow(kind, dim, ctx, seed=0, scale=0.3):
    """A density flow whose parameters are far from their initial values (so every spline
    is curved and the networks' outputs depend on their inputs)."""
    torch.manual_seed(seed)
    cfg = FlowConfig(kind=kind, layers=3, hidden=16, blocks=2, bins=6, tail_bound=2.0)
    flow = flows.build_density_flow(dim, cfg, context_dim=ctx).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
    return flow


def points(n, dim, ctx, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    x[0] = 5.0  # every coordinate beyond the tail bound
    x[1, 0] = -2.0  # exactly on the bound
    x[2, -1] = 2.0
    x[3, 0] = -9.0  # one coordinate far out
    c = torch.randn(n, ctx, generator=g, dtype=torch.float64) if ctx else None
    return x, c


def evaluate(flow, fn, x, c):
    """Values, log-dets and the gradients of their sum w.r.t. the input and parameters."""
    xi = x.clone().requires_grad_(True)
    y, ld = fn(flow, xi, c)
    params = list(flow.parameters())
    grads = torch.autograd.grad(y.sum() + 0.7 * ld.sum(), [xi, *params], allow_unused=True)
    return y.detach(), ld.detach(), grads


@pytest.mark.parametrize("direction", DIRECTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("kind", "dim", "ctx"), CASES)
def test_fused_equals_normflows(kind, dim, ctx, direction):
    flow = perturbed_flow(kind, dim, ctx)
    x, c = points(200, dim, ctx)
    y, ld, _ = evaluate(flow, direction, x, c)
    with splines.reference():
        y_ref, ld_ref, _ = evaluate(flow, direction, x, c)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld, ld_ref, rtol=1e-10, atol=1e-10)
    # gradients without the rows placed exactly on the tail bound: there the log-det has a
    # kink, and which side a later layer sees depends on the last bit of the earlier layers'
    # sums (normflows' own gradient there changes with the batch composition)
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[1:3] = False
    cc = None if c is None else c[keep]
    _, _, g = evaluate(flow, direction, x[keep], cc)
    with splines.reference():
        _, _, g_ref = evaluate(flow, direction, x[keep], cc)
    compared = 0
    for a, b in zip(g, g_ref, strict=True):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10 * (1 + float(b.abs().max())))
            compared += 1
    assert compared > 2
    assert not torch.equal(y, x)  # the flow does something (the comparison can fail)


@pytest.mark.parametrize(("kind", "dim", "ctx"), CASES)
def test_fused_round_trip(kind, dim, ctx):
    flow = perturbed_flow(kind, dim, ctx, seed=3, scale=0.05)
    x, c = points(300, dim, ctx)
    with torch.no_grad():
        z, ld = flows.to_base(flow, x, c)
        back, ld_back = flows.from_base(flow, z, c)
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld_back, -ld, rtol=1e-9, atol=1e-9)


def test_fused_log_det_is_the_jacobian():
    flow = perturbed_flow("autoregressive", 3, 1, seed=5)
    x, c = points(6, 3, 1)
    with torch.no_grad():
        _, ld = flows.from_base(flow, x, c)
    for i in range(len(x)):

        def f(row, i=i):
            return flows.from_base(flow, row[None], c[i : i + 1])[0][0]

        jac = torch.autograd.functional.jacobian(f, x[i])
        assert math.isclose(float(torch.linalg.slogdet(jac)[1]), float(ld[i]), abs_tol=1e-9)


def test_float32_close_to_float64():
    flow = perturbed_flow("autoregressive", 4, 1, seed=2)
    x, c = points(500, 4, 1)
    with torch.no_grad():
        y64, ld64 = flows.from_base(flow, x, c)
        f32 = flow.float()
        y32, ld32 = flows.from_base(f32, x.float(), c.float())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ld32.double(), ld64, rtol=1e-3, atol=1e-3)


def test_unsupported_layers_fall_back_to_normflows():
    torch.manual_seed(0)
    permuted = nf.flows.AutoregressiveRationalQuadraticSpline(3, 1, 8, permute_mask=True).double()
    with torch.no_grad():
        for p in permuted.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(50, 3, dtype=torch.float64)
    fast = splines.layer_pass(permuted, x, None, to_base=False)
    with splines.reference():
        ref = splines.layer_pass(permuted, x, None, to_base=False)
    assert torch.equal(fast[0], ref[0])  # the same code ran
    assert not splines._autoregressive_supported(permuted)


def test_reference_switch_restores_after_errors():
    seen = []

    def fail():
        with splines.reference():
            seen.append(splines.fast_enabled())
            raise RuntimeError

    assert splines.fast_enabled()
    with pytest.raises(RuntimeError):
        fail()
    assert seen == [False]
    assert splines.fast_enabled()


def test_empty_batch():
    flow = perturbed_flow("autoregressive", 3, 0)
    x = torch.zeros(0, 3, dtype=torch.float64)
    for fn in DIRECTIONS:
        y, ld = fn(flow, x)
        assert y.shape == (0, 3)
        assert ld.shape == (0,)


@pytest.mark.parametrize("kind", ["autoregressive", "coupling"])
def test_identity_init_stays_exact(kind):
    cfg = FlowConfig(kind=kind, layers=4, hidden=16, bins=8, tail_bound=3.0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the identity biases are exact only when built so
    try:
        layers = flows.build_layers(3, cfg, identity_init=True)
    finally:
        torch.set_default_dtype(previous)
    x = 4 * torch.randn(100, 3, dtype=torch.float64)
    for to_base in (True, False):
        z = x
        for layer in layers if not to_base else reversed(layers):
            z, ld = splines.layer_pass(layer, z, None, to_base=to_base)
            torch.testing.assert_close(ld, torch.zeros_like(ld), rtol=0, atol=1e-12)
        torch.testing.assert_close(z, x, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-20, max_value=20, allow_nan=False, width=64), min_size=3, max_size=3
    )
)
def test_round_trip_property(row):
    flow = _PROPERTY_FLOW
    x = torch.tensor([row], dtype=torch.float64)
    with torch.no_grad():
        z, ld = flows.to_base(flow, x)
        back, ld_back = flows.from_base(flow, z)
        with splines.reference():
            z_ref, _ = flows.to_base(flow, x)
            back_ref, _ = flows.from_base(flow, z_ref)
    torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
    # far out, the in-range coordinates' conditioners saturate and the round trip loses
    # digits (DESIGN-NOTES "Extreme values"; 1.2e-6 at (-15.9, 12, 0) here), in normflows'
    # evaluation as much as in the fused one
    err, err_ref = float((back - x).abs().max()), float((back_ref - x).abs().max())
    assert max(err, err_ref) < 1e-5
    if max(abs(v) for v in row) <= 6:  # three times the tail bound
        assert err < 1e-9
    assert torch.isfinite(ld).all()
    assert torch.isfinite(ld_back).all()


_PROPERTY_FLOW = perturbed_flow("autoregressive", 3, 0, seed=11, scale=0.05)


@pytest.mark.parametrize("inverse", [False, True])
def test_hand_written_spline_gradients(inverse):
    g = torch.Generator().manual_seed(4)
    n, k = 40, 5
    x = (3.0 * torch.rand(n, 3, generator=g, dtype=torch.float64) - 1.5).requires_grad_(True)
    wh = torch.randn(n, 3, 2, k, generator=g, dtype=torch.float64).requires_grad_(True)
    ud = torch.randn(n, 3, k - 1, generator=g, dtype=torch.float64).requires_grad_(True)

    def f(x, wh, ud):
        return splines.rq_spline(
            x,
            wh,
            ud,
            tail_bound=2.0,
            inverse=inverse,
            min_bin_width=1e-3,
            min_bin_height=1e-3,
            min_derivative=1e-3,
        )

    assert torch.autograd.gradcheck(f, (x, wh, ud), eps=1e-6, atol=1e-6, rtol=1e-5)


def _grads_wrt(flow, x, c, frozen):
    """``to_base``'s values and the gradients w.r.t. the input, the condition and (unless
    ``frozen``) the parameters, of a weighted sum of the outputs and the log-det."""
    flow.requires_grad_(not frozen)
    xi, ci = x.clone().requires_grad_(True), c.clone().requires_grad_(True)
    y, ld = flows.to_base(flow, xi, ci)
    w = torch.linspace(0.3, 1.1, x.shape[1], dtype=x.dtype)
    wrt = [xi, ci] + ([] if frozen else list(flow.parameters()))
    return y, torch.autograd.grad((y * w).sum() + 0.7 * ld.sum(), wrt)


@pytest.mark.parametrize("frozen", [False, True], ids=["trained", "frozen"])
def test_autoregressive_node_gradients_include_the_condition(frozen):
    # the data -> base pass of an autoregressive layer is one autograd node with a written-out
    # backward; a frozen density (a morph's base) still passes gradients to its input and to
    # the condition, and every parameter's gradient matches normflows' autograd
    flow = perturbed_flow("autoregressive", 4, 2, seed=7)
    x, c = points(120, 4, 2, seed=4)
    x, c = x[4:], c[4:]  # off the tail bound's kink (see test_fused_equals_normflows)
    calls = []
    apply = splines._AutoregressiveToBase.apply
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(splines._AutoregressiveToBase, "apply", lambda *a: calls.append(1) or apply(*a))
        y, g = _grads_wrt(flow, x, c, frozen)
    assert len(calls) == 3  # every layer went through the node
    with splines.reference():
        y_ref, g_ref = _grads_wrt(flow, x, c, frozen)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    assert len(g) == len(g_ref) == (2 if frozen else 2 + len(list(flow.parameters())))
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10 * (1 + float(b.abs().max())))
    assert float(g[1].abs().max()) > 1e-3  # the condition's gradient is not trivially zero


def test_autoregressive_node_gradcheck():
    torch.manual_seed(0)
    layer = nf.flows.AutoregressiveRationalQuadraticSpline(
        3, 2, 6, num_context_channels=1, num_bins=4, tail_bound=2.0
    ).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(2)
    x = (0.8 * torch.randn(7, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    c = torch.randn(7, 1, generator=g, dtype=torch.float64).requires_grad_(True)
    assert splines._fusable(layer.mprqat.autoregressive_net, c)
    assert torch.autograd.gradcheck(
        lambda x, c: splines.layer_pass(layer, x, c, to_base=True), (x, c)
    )


def test_autoregressive_node_skips_active_dropout():
    torch.manual_seed(0)
    cfg = FlowConfig(layers=2, hidden=8, blocks=1, bins=4, dropout=0.2)
    flow = flows.build_density_flow(3, cfg)
    net = flow.flows[0].mprqat.autoregressive_net
    flow.train()
    assert not splines._fusable(net, None)  # dropout must really drop: normflows' path
    flow.eval()
    assert splines._fusable(net, None)
    x = torch.randn(50, 3)
    flow.train()
    torch.manual_seed(1)
    a = flows.to_base(flow, x)[0]
    torch.manual_seed(1)
    with splines.reference():
        b = flows.to_base(flow, x)[0]
    torch.testing.assert_close(a, b)


def test_nodes_free_what_they_saved():
    # the spline and layer nodes keep their tensors through save_for_backward: a second
    # backward without retain_graph raises (it would silently double the gradients otherwise)
    flow = perturbed_flow("autoregressive", 3, 1, seed=2)
    x, c = points(40, 3, 1)
    for direction in DIRECTIONS:
        y, ld = direction(flow, x.clone().requires_grad_(True), c)
        loss = y.sum() + ld.sum()
        loss.backward()
        with pytest.raises(RuntimeError, match="second time"):
            loss.backward()


def test_in_place_relu_falls_back():
    torch.manual_seed(0)
    layer = nf.flows.AutoregressiveRationalQuadraticSpline(3, 2, 8).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    for block in layer.mprqat.autoregressive_net.blocks:
        block.activation = torch.nn.ReLU(inplace=True)
    assert not splines._fusable(layer.mprqat.autoregressive_net, None)
    x = torch.randn(30, 3, dtype=torch.float64)
    fast = splines.layer_pass(layer, x, None, to_base=True)
    with splines.reference():
        ref = splines.layer_pass(layer, x, None, to_base=True)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
