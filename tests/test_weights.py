"""Signed event weights in the likelihood: sum(w * nll) / sum(w) per dataset term."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import QUICK, TINY

import coffea_f4f as f4f
from coffea_f4f import flows
from coffea_f4f.train import loop


def test_weighted_batch_loss_is_the_duplicated_batch_mean():
    rng = np.random.default_rng(0)
    nll = torch.as_tensor(rng.normal(size=50))
    w = torch.as_tensor(rng.integers(1, 4, 50).astype(float))
    dup = nll.repeat_interleave(w.long())
    torch.testing.assert_close(loop.weighted_mean(nll, w, 1.0), dup.mean(), rtol=1e-12, atol=0)
    assert loop.weighted_mean(nll, None, 1.0) is not None
    torch.testing.assert_close(loop.weighted_mean(nll, None, 1.0), nll.mean())
    # a batch whose weights cancel falls back to the dataset's mean weight, never flips sign
    w_cancel = torch.as_tensor([1.0, -1.0] * 25)
    got = loop.weighted_mean(nll, w_cancel, 0.5)
    torch.testing.assert_close(got, (w_cancel * nll).sum() / 25.0)


def _one_step(x: np.ndarray, w: np.ndarray | None) -> tuple[list[float], list[torch.Tensor]]:
    cfg = f4f.TrainConfig(
        epochs=1,
        batch_size=10_000,
        val_fraction=0.0,
        progress=False,
        schedule="constant",
        lr=1e-2,
        patience=None,
    )
    with loop.seeded(7):
        model = flows.build_density_flow(1, TINY)
    data = loop.split(x, None, cfg, "cpu", loop.Salt.DENSITY, w)
    term = loop.Term(lambda xb, cb: -flows.log_prob(model, xb, cb), data)
    history = loop.run_loop(model, [term], cfg, desc="t", checkpoint=None)
    return history["train_loss"], [p.detach().clone() for p in model.parameters()]


def test_training_with_integer_weights_equals_training_on_duplicated_events():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 1))
    w = rng.integers(1, 4, 400).astype(float)
    loss_w, params_w = _one_step(x, w)
    loss_d, params_d = _one_step(np.repeat(x, w.astype(int), axis=0), None)
    np.testing.assert_allclose(loss_w, loss_d, rtol=1e-5)  # same loss on the same batch
    for a, b in zip(params_w, params_d, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)  # same step (float32 sums)
    loss_u, _ = _one_step(x, None)
    assert not np.allclose(loss_u, loss_w, rtol=1e-3)  # the weights do something


def test_cancelling_pairs_leave_the_net_density():
    rng = np.random.default_rng(2)
    net = rng.normal(size=3000)  # the net distribution: N(0, 1)
    bump = rng.normal(3.0, 0.4, 2000)  # a distortion present with +1 and -1: cancels exactly
    x = np.concatenate([net, bump, bump])
    w = np.concatenate([np.ones(3000), np.ones(2000), -np.ones(2000)])
    train = QUICK.replace(epochs=8, lr=3e-3)
    flow = f4f.FlowConfig(layers=2, hidden=16, blocks=1, bins=8)
    with pytest.warns(UserWarning, match="effective sample size"):
        weighted = f4f.fit_density(
            {"x": x, "w": w}, features=["x"], weights="w", flow=flow, train=train
        )
    plain = f4f.fit_density({"x": x}, features=["x"], flow=flow, train=train)
    ess = weighted.history["effective_sample_size"]
    assert ess == pytest.approx(3000**2 / 7000)
    held = rng.normal(size=(4000, 1))
    at_bump = np.full((500, 1), 3.0)
    # the weighted fit has (almost) no density at the bump; the plain fit has a second mode
    assert weighted.log_prob(at_bump).mean() < plain.log_prob(at_bump).mean() - 2.0
    assert weighted.log_prob(held).mean() > plain.log_prob(held).mean() + 0.1
    s = weighted.sample(4000, seed=3)[:, 0]
    assert abs(s.mean()) < 0.15  # N(0, 1): the net density
    assert np.mean(s > 2.2) < 0.03


def test_bad_weights_are_refused_with_the_reason():
    x = {"x": np.random.default_rng(3).normal(size=100)}
    with pytest.raises(ValueError, match=r"non-finite.*weights"):
        f4f.fit_density(x, features=["x"], weights=np.full(100, np.nan), train=QUICK)
    with pytest.raises(ValueError, match="50 values for 100"):
        f4f.fit_density(x, features=["x"], weights=np.ones(50), train=QUICK)
    with pytest.raises(ValueError, match=r"weights sum to -100.*sum\(w\) > 0"):
        f4f.fit_density(x, features=["x"], weights=-np.ones(100), train=QUICK)
    with pytest.raises(f4f.MissingColumnError, match="'wgt'"):
        f4f.fit_density(x, features=["x"], weights="wgt", train=QUICK)


def test_morpher_weights_enter_both_terms_and_the_densities():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(600, 2)), rng.normal(size=(600, 2)) + 1.0
    src = {"x": a[:, 0], "y": a[:, 1], "w": rng.uniform(0.5, 1.5, 600)}
    tgt = {"x": b[:, 0], "y": b[:, 1]}
    m = f4f.fit_morpher(
        src,
        tgt,
        features=["x", "y"],
        source_weights="w",
        target_weights=np.ones(600),
        flow=TINY,
        density=TINY,
        train=QUICK,
    )
    h = m.history
    assert h["source_density"]["effective_sample_size"] < 600
    assert h["target_density"]["effective_sample_size"] == pytest.approx(600)
    plain = f4f.fit_morpher(src, tgt, features=["x", "y"], flow=TINY, density=TINY, train=QUICK)
    assert plain.history["morph"]["train_loss"] != h["morph"]["train_loss"]
