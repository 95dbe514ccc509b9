"""Training: reproducibility, resume, early stopping, variants, bad input, and quality."""

import numpy as np
import pytest
import torch
from conftest import QUICK, TINY, gaussian_pair

import coffea_f4f as f4f
from coffea_f4f import flows
from coffea_f4f.config import FlowConfig, TrainConfig
from coffea_f4f.metrics import c2st_auc
from coffea_f4f.train import loop


def as_dict(a):
    return {"x": a[:, 0], "y": a[:, 1]}


def states_equal(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    return s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def test_same_seed_same_model_other_seed_other_model():
    a, _ = gaussian_pair(800)
    d1 = f4f.fit_density(as_dict(a), features=["x", "y"], flow=TINY, train=QUICK)
    d2 = f4f.fit_density(as_dict(a), features=["x", "y"], flow=TINY, train=QUICK)
    d3 = f4f.fit_density(as_dict(a), features=["x", "y"], flow=TINY, train=QUICK.replace(seed=1))
    assert states_equal(d1.flow, d2.flow)
    assert not states_equal(d1.flow, d3.flow)
    assert d1.history["train_loss"] == d2.history["train_loss"]


def test_resume_continues_where_it_stopped(tmp_path):
    a, _ = gaussian_pair(600)
    cfg = QUICK.replace(epochs=4, patience=None, checkpoint=str(tmp_path / "ck.pt"))
    full = f4f.fit_density(
        as_dict(a),
        features=["x", "y"],
        flow=TINY,
        train=cfg.replace(checkpoint=str(tmp_path / "other.pt")),
    )

    def crash_after_two(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        f4f.fit_density(
            as_dict(a), features=["x", "y"], flow=TINY, train=cfg, callback=crash_after_two
        )
    seen = []
    resumed = f4f.fit_density(
        as_dict(a),
        features=["x", "y"],
        flow=TINY,
        train=cfg.replace(resume=True),
        callback=lambda e, logs: seen.append(e),
    )
    assert seen == [3, 4]  # only the epochs that were missing ran
    assert resumed.history["train_loss"] == full.history["train_loss"]
    assert states_equal(resumed.flow, full.flow)
    # a finished checkpoint resumes to the same model without training again
    seen.clear()
    again = f4f.fit_density(
        as_dict(a),
        features=["x", "y"],
        flow=TINY,
        train=cfg.replace(resume=True),
        callback=lambda e, _: seen.append(e),
    )
    assert seen == []
    assert states_equal(again.flow, full.flow)


def test_resume_from_missing_path_fails(tmp_path):
    a, b = gaussian_pair(100)
    missing = str(tmp_path / "nothing" / "ck.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        f4f.fit_density(
            as_dict(a), features=["x", "y"], flow=TINY, train=QUICK.replace(resume=missing)
        )
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        f4f.fit_morpher(
            as_dict(a),
            as_dict(b),
            features=["x", "y"],
            flow=TINY,
            train=QUICK.replace(resume=missing),
        )
    assert not (tmp_path / "nothing").exists()


def test_early_stopping_restores_the_best_state():
    a, _ = gaussian_pair(1500)
    cfg = QUICK.replace(epochs=15, patience=1, lr=5e-2, schedule="constant")
    d = f4f.fit_density(as_dict(a), features=["x", "y"], flow=TINY, train=cfg)
    h = d.history
    assert h["stopped_early"]
    assert h["epochs_run"] < cfg.epochs
    assert h["epochs_run"] - h["best_epoch"] == cfg.patience
    assert h["best_epoch"] == int(np.argmin(h["val_loss"])) + 1
    # recompute the validation loss of the returned model on the same split
    z = d.scaler.forward(a)
    split = loop.split(z, None, cfg, "cpu", salt=loop.Salt.DENSITY)
    with torch.no_grad():
        val = -flows.log_prob(d.flow, split.val[0]).mean().item()
    assert val == pytest.approx(min(h["val_loss"]), abs=1e-4)
    assert val < h["val_loss"][-1]  # the last epoch was worse: the best state came back


def test_progress_bar_can_be_switched_off(capsys):
    a, _ = gaussian_pair(300)
    f4f.fit_density(as_dict(a), features=["x", "y"], flow=TINY, train=QUICK)
    assert capsys.readouterr().err == ""
    f4f.fit_density(as_dict(a), features=["x", "y"], flow=TINY, train=QUICK.replace(progress=True))
    assert "density" in capsys.readouterr().err


def test_every_event_of_both_datasets_is_used_each_epoch():
    gen = torch.Generator().manual_seed(0)
    idx = loop.epoch_indices(7, 20, gen)
    assert len(idx) == 20
    assert set(idx[:7].tolist()) == set(range(7))
    assert set(idx.tolist()) == set(range(7))


def test_bad_training_input():
    a, b = gaussian_pair(100)
    bad = a.copy()
    bad[:3, 1] = np.nan
    with pytest.raises(ValueError, match=r"'y': 3 of 100"):
        f4f.fit_morpher(as_dict(bad), as_dict(b), features=["x", "y"], train=QUICK)
    with pytest.raises(ValueError, match="0 events"):
        f4f.fit_density({"x": np.zeros(0), "y": np.zeros(0)}, features=["x", "y"])
    with pytest.raises(f4f.MissingColumnError, match="'x'"):
        f4f.fit_density(as_dict(a), features=["xx", "y"])
    with pytest.raises(ValueError, match="empty"):
        f4f.fit_density(as_dict(a), features=[])
    with pytest.raises(TypeError, match="list of field names"):
        f4f.fit_density(as_dict(a), features="x")
    with pytest.raises(ValueError, match="both a feature and a condition"):
        f4f.fit_density(as_dict(a), features=["x", "y"], condition="y")
    with pytest.raises(ValueError, match="'x' is both a feature and a condition"):
        f4f.fit_density(as_dict(a), features=["x"], condition=["y", "x"])
    with pytest.raises(ValueError, match="conditions listed more than once"):
        f4f.fit_density(as_dict(a), features=["x"], condition=["y", "y"])
    with pytest.raises(TypeError, match="field name or a list of field names"):
        f4f.fit_density(as_dict(a), features=["x"], condition=3)
    with pytest.raises(ValueError, match="variant"):
        f4f.fit_morpher(as_dict(a), as_dict(b), features=["x", "y"], variant="sideways")
    with pytest.raises(ValueError, match="penalty_weight"):
        f4f.fit_morpher(as_dict(a), as_dict(b), features=["x", "y"], penalty="l1")
    with pytest.raises(ValueError, match="penalty"):
        f4f.fit_morpher(
            as_dict(a), as_dict(b), features=["x", "y"], penalty="l3", penalty_weight=1.0
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_cuda_device_is_refused_without_cuda():
    a, _ = gaussian_pair(100)
    with pytest.raises(ValueError, match="CUDA is not available"):
        f4f.fit_density(as_dict(a), features=["x", "y"], train=QUICK.replace(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_trains_when_available():
    a, _ = gaussian_pair(300)
    d = f4f.fit_density(
        as_dict(a), features=["x", "y"], flow=TINY, train=QUICK.replace(device="cuda")
    )
    assert d.history["epochs_run"] == QUICK.epochs
    assert np.isfinite(d.log_prob(a)).all()


def test_supplied_density_must_match_features(tiny_morpher):
    a, b = gaussian_pair(100)
    with pytest.raises(ValueError, match="trained on features"):
        f4f.fit_morpher(
            {"y": a[:, 1], "x": a[:, 0]},
            {"y": b[:, 1], "x": b[:, 0]},
            features=["y", "x"],
            source_density=tiny_morpher.source_density,
        )
    with pytest.raises(TypeError, match="DensityModel"):
        f4f.fit_morpher(as_dict(a), as_dict(b), features=["x", "y"], source_density="model")


@pytest.mark.parametrize("variant", ["unidirectional", "base_transfer"])
def test_other_variants_run_and_round_trip(variant, tmp_path):
    a, b = gaussian_pair(600)
    m = f4f.fit_morpher(
        as_dict(a),
        as_dict(b),
        features=["x", "y"],
        variant=variant,
        flow=TINY,
        density=TINY,
        train=QUICK,
    )
    assert m.variant == variant
    x = gaussian_pair(200, seed=9)[0]
    y = m.morph(x)
    assert np.isfinite(y).all()
    assert np.abs(y - x).mean() > 0.05
    np.testing.assert_allclose(m.inverse(y), x, atol=1e-8)
    np.testing.assert_array_equal(f4f.load(m.save(tmp_path / variant)).morph(x), y)


def test_movement_penalty_reduces_distance_moved():
    """Source and target are the same gaussian: any measure-preserving map is a valid morph;
    from a random start, the L2 penalty must end much closer to the identity."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(1500, 2)), rng.normal(size=(1500, 2))
    common = {
        "features": ["x", "y"],
        "flow": TINY,
        "density": TINY,
        "train": QUICK.replace(epochs=3, lr=1e-2),
        "identity_init": False,
    }
    free = f4f.fit_morpher(as_dict(a), as_dict(b), **common)
    tight = f4f.fit_morpher(
        as_dict(a),
        as_dict(b),
        penalty="l2",
        penalty_weight=10.0,
        source_density=free.source_density,
        target_density=free.target_density,
        **common,
    )
    x = gaussian_pair(1000, seed=3)[0]
    d_free = np.linalg.norm(free.morph(x) - x, axis=1).mean()
    d_tight = np.linalg.norm(tight.morph(x) - x, axis=1).mean()
    assert d_tight < 0.5 * d_free, (d_tight, d_free)


def test_gaussian_to_shifted_rotated_gaussian_quality():
    """A good morph: the classifier AUC on held-out events drops from ~0.83 to near 0.5.

    Threshold 0.56: the null sigma at 3000 vs 3000 events is 0.0075, the same-distribution
    AUC of this classifier sits within ~2 sigma of 0.5; 0.56 leaves room for a small,
    CI-sized flow while failing any morph that leaves a visible mismatch (before: ~0.83).
    """
    a, b = gaussian_pair(5000)
    m = f4f.fit_morpher(
        as_dict(a),
        as_dict(b),
        features=["x", "y"],
        flow=FlowConfig(layers=3, hidden=32),
        density=FlowConfig(layers=3, hidden=32),
        train=TrainConfig(epochs=8, batch_size=256, lr=2e-3, progress=False, num_threads=1),
    )
    xs, xt = gaussian_pair(3000, seed=21)
    before, _ = c2st_auc(xs, xt)
    after, sigma = c2st_auc(m.morph(xs), xt)
    assert before > 0.75
    assert after < 0.56, (after, sigma)


def test_supplied_densities_give_the_same_quality_as_internal_ones():
    """Densities trained by fit_density (each in its own scaling) are bridged exactly."""
    a, b = gaussian_pair(3000)
    b = b * 2.0 + 5.0  # far from the source: the two density scalings differ a lot
    cfg = {
        "flow": FlowConfig(layers=2, hidden=24),
        "train": TrainConfig(epochs=10, batch_size=256, lr=2e-3, progress=False, num_threads=1),
    }
    qa = f4f.fit_density(as_dict(a), features=["x", "y"], **cfg)
    qb = f4f.fit_density(as_dict(b), features=["x", "y"], **cfg)
    assert not qa.scaler.same_as(qb.scaler)
    inside = f4f.fit_morpher(
        as_dict(a), as_dict(b), features=["x", "y"], density=cfg["flow"], **cfg
    )
    given = f4f.fit_morpher(
        as_dict(a), as_dict(b), features=["x", "y"], source_density=qa, target_density=qb, **cfg
    )
    xs, xt = gaussian_pair(2000, seed=31)
    xt = xt * 2.0 + 5.0
    auc_inside, sigma = c2st_auc(inside.morph(xs), xt)
    auc_given, _ = c2st_auc(given.morph(xs), xt)
    assert auc_given < 0.58
    assert auc_inside < 0.58
    assert abs(auc_given - auc_inside) < 4 * sigma + 0.02


def test_paper_toy_pair_checkerboard_to_star_quality():
    """Two of the paper's shapes, at CI size (8k events, 4 x 64 flows, 10 epochs, ~1 min).

    Threshold 0.68 (before: ~0.99). At this budget the density flows themselves reach
    sample-vs-data AUCs of ~0.60 (checkerboard: sharp square edges) and ~0.53 (star), and the
    morph cannot beat its bases: measured 0.57-0.62 over architectures. 0.68 fails a morph
    that has not learned the star's arms or the board's squares (base transfer alone gives
    ~0.58; the untrained identity gives the 'before' value). The slow test below trains the
    paper-size flows longer and asks for more.
    """
    from coffea_f4f import datasets

    xs = datasets.toy("checkerboard", 8000, seed=1)
    xt = datasets.toy("star", 8000, seed=2)
    cfg = FlowConfig(layers=4, hidden=64)
    m = f4f.fit_morpher(
        xs,
        xt,
        features=["x", "y"],
        flow=cfg,
        density=cfg,
        train=TrainConfig(
            epochs=10, batch_size=256, lr=2e-3, patience=None, progress=False, num_threads=1
        ),
    )
    hs = datasets.toy("checkerboard", 4000, seed=11)
    ht = datasets.toy("star", 4000, seed=12)
    before, _ = c2st_auc(hs, ht)
    after, sigma = c2st_auc(m.morph(hs), ht)
    assert before > 0.95
    assert after < 0.68, (after, sigma)


@pytest.mark.slow
def test_paper_toy_pair_long_training_quality():
    """The paper's morph-flow size (6 layers, 16 bins), more events and epochs (~10 min)."""
    from coffea_f4f import datasets

    xs = datasets.toy("checkerboard", 30000, seed=1)
    xt = datasets.toy("star", 30000, seed=2)
    m = f4f.fit_morpher(
        xs,
        xt,
        features=["x", "y"],
        flow=FlowConfig(layers=6, hidden=64, bins=16),
        density=FlowConfig(layers=6, hidden=64, bins=16),
        train=TrainConfig(epochs=20, batch_size=256, lr=2e-3, progress=False),
    )
    hs = datasets.toy("checkerboard", 5000, seed=11)
    ht = datasets.toy("star", 5000, seed=12)
    after, sigma = c2st_auc(m.morph(hs), ht)
    assert after < 0.6, (after, sigma)
