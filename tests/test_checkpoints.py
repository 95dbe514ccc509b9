"""Checkpoints know what they belong to: fingerprints, damaged files, unwritable paths, and
resumes that stay exact (plain fits and ensembles)."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from conftest import QUICK, TINY, gaussian_pair

import coffea_f4f as f4f
from coffea_f4f.train import loop
from coffea_f4f.train.loop import CheckpointError, CheckpointMismatchError

FEATURES = ["x", "y"]


def as_dict(a):
    return {"x": a[:, 0], "y": a[:, 1]}


def states_equal(m1, m2):
    s1, s2 = m1.state_dict(), m2.state_dict()
    return s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def density(data, train, flow=TINY, callback=None):
    return f4f.fit_density(
        as_dict(data), features=FEATURES, flow=flow, train=train, callback=callback
    )


def crash_at(n):
    def callback(epoch, logs):
        if epoch == n:
            raise KeyboardInterrupt("simulated crash")

    return callback


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch density checkpoint of a gaussian, its data and its config."""
    a, _ = gaussian_pair(400)
    path = tmp_path_factory.mktemp("finished") / "ck.pt"
    cfg = QUICK.replace(checkpoint=str(path), patience=None)
    model = density(a, cfg)
    return a, cfg, model


@pytest.fixture
def copy_of(finished, tmp_path):
    """A fresh copy of the finished checkpoint (tests may damage it) and its config."""
    a, cfg, model = finished
    path = tmp_path / "ck.pt"
    shutil.copy(cfg.checkpoint, path)
    return a, cfg.replace(checkpoint=str(path)), model


# ----------------------------------------------------------------------------- fingerprints
def test_errors_are_value_errors_exported_and_picklable():
    assert issubclass(CheckpointMismatchError, CheckpointError)
    assert issubclass(CheckpointError, ValueError)
    assert {"CheckpointError", "CheckpointMismatchError"} <= set(loop.__all__)
    err = pickle.loads(pickle.dumps(CheckpointMismatchError("/p/ck", ["a differs"])))
    assert (err.path, err.differences, str(err)) == (
        "/p/ck",
        ["a differs"],
        str(CheckpointMismatchError("/p/ck", ["a differs"])),
    )
    err = pickle.loads(pickle.dumps(CheckpointError("/p/ck", "is bad")))
    assert str(err) == "checkpoint '/p/ck' is bad"


def test_checkpoint_holds_a_fingerprint_of_data_and_settings(finished):
    _, cfg, _ = finished
    fp = torch.load(cfg.checkpoint, weights_only=True)["fingerprint"]
    assert fp["version"] == loop.FINGERPRINT_VERSION
    assert fp["stage"] == "density"
    assert len(fp["data"]) == 64  # SHA-256 hex
    assert fp["rows"] == [[320, 80]]  # val_fraction 0.2 of 400
    assert fp["setup"]["flow"] == TINY.to_dict()
    assert set(fp["train"]) == set(loop.TRAJECTORY_FIELDS)
    assert fp["train"]["lr"] == cfg.lr
    for name in ("progress", "num_threads", "device", "checkpoint", "resume"):
        assert name not in fp["train"]


def test_finished_checkpoint_of_other_data_is_refused(copy_of):
    """On main, a finished checkpoint of one dataset was silently returned for another."""
    a, cfg, _ = copy_of
    other, _ = gaussian_pair(400, seed=5)
    other = other * [2.0, 0.5]
    for train in (cfg.replace(resume=True), cfg.replace(checkpoint=None, resume=cfg.checkpoint)):
        with pytest.raises(CheckpointMismatchError, match="other training data") as info:
            density(other, train)
        assert cfg.checkpoint in str(info.value)
        assert info.value.path == cfg.checkpoint
    # one more event is other data too
    with pytest.raises(CheckpointMismatchError, match=r"rows per term \[\[320, 80\]\]"):
        density(np.concatenate([a, a[:1]]), cfg.replace(resume=True))


def test_other_architecture_is_refused(copy_of):
    a, cfg, _ = copy_of
    with pytest.raises(CheckpointMismatchError, match="another architecture") as info:
        density(a, cfg.replace(resume=True), flow=TINY.replace(hidden=24))
    assert "in the checkpoint" in str(info.value)
    # same shapes, other map: the FlowConfig is part of the fingerprint
    with pytest.raises(CheckpointMismatchError, match=r"flow\.tail_bound=4\.0 in the checkpoint"):
        density(a, cfg.replace(resume=True), flow=TINY.replace(tail_bound=3.0))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lr", 3e-3),
        ("seed", 7),
        ("batch_size", 128),
        ("weight_decay", 1e-4),
        ("grad_clip", None),
        ("val_fraction", 0.1),
        ("max_events", 300),
        ("schedule", "constant"),
    ],
)
def test_other_trajectory_settings_are_refused(copy_of, name, value):
    a, cfg, _ = copy_of
    with pytest.raises(CheckpointMismatchError, match=rf"TrainConfig\.{name}="):
        density(a, cfg.replace(resume=True, **{name: value}))


def test_settings_that_do_not_change_the_run_may_differ(copy_of):
    a, cfg, model = copy_of
    seen = []
    again = density(
        a,
        cfg.replace(resume=True, num_threads=2, device="cpu", progress=False),
        callback=lambda e, _: seen.append(e),
    )
    assert seen == []  # finished: nothing trains again
    assert states_equal(again.flow, model.flow)


def test_epochs_may_grow_while_unfinished_with_a_constant_schedule(tmp_path):
    a, _ = gaussian_pair(400)
    cfg = QUICK.replace(
        epochs=3, schedule="constant", patience=None, checkpoint=str(tmp_path / "ck")
    )
    full = density(a, cfg.replace(epochs=5, checkpoint=str(tmp_path / "full")))
    with pytest.raises(KeyboardInterrupt):
        density(a, cfg, callback=crash_at(2))
    seen = []
    longer = density(a, cfg.replace(epochs=5, resume=True), callback=lambda e, _: seen.append(e))
    assert seen == [3, 4, 5]
    assert longer.history["train_loss"] == full.history["train_loss"]
    assert states_equal(longer.flow, full.flow)
    # finished now: no more epochs, and no fewer than it has run
    for epochs in (7, 4):
        with pytest.raises(CheckpointMismatchError, match=r"TrainConfig\.epochs=5 .*finished"):
            density(a, cfg.replace(epochs=epochs, resume=True))


def test_epochs_of_a_cosine_run_and_of_a_finished_run_are_fixed(tmp_path, copy_of):
    a, cfg, _ = copy_of
    with pytest.raises(CheckpointMismatchError, match=r"epochs=2 in the checkpoint, 4 here"):
        density(a, cfg.replace(epochs=4, resume=True))
    ck = str(tmp_path / "cosine")
    with pytest.raises(KeyboardInterrupt):
        density(a, QUICK.replace(epochs=3, checkpoint=ck), callback=crash_at(1))
    with pytest.raises(CheckpointMismatchError, match="cosine schedule"):
        density(a, QUICK.replace(epochs=4, checkpoint=ck, resume=True))


def test_patience_may_grow_while_unfinished(tmp_path):
    a, _ = gaussian_pair(400)
    cfg = QUICK.replace(epochs=3, patience=5, checkpoint=str(tmp_path / "ck"))
    full = density(a, cfg.replace(patience=None, checkpoint=str(tmp_path / "full")))
    with pytest.raises(KeyboardInterrupt):
        density(a, cfg, callback=crash_at(1))
    with pytest.raises(CheckpointMismatchError, match="patience may only grow"):
        density(a, cfg.replace(patience=4, resume=True))
    resumed = density(a, cfg.replace(patience=None, resume=True))
    assert states_equal(resumed.flow, full.flow)
    with pytest.raises(CheckpointMismatchError, match="patience"):
        density(a, cfg.replace(patience=2, resume=True))


# ----------------------------------------------------------------------------- damaged files
def _rewrite(path, change):
    ck = torch.load(path, weights_only=True)
    change(ck)
    torch.save(ck, path)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    _write(path, data[: len(data) // 2])


class _NotAllowed:  # a pickle global that weights_only=True refuses
    pass


def _first(sd):
    return next(iter(sd))


DAMAGE = {
    "truncated": _truncate,
    "empty": lambda p: _write(p, b""),
    "random bytes": lambda p: _write(p, np.random.default_rng(0).bytes(5000)),
    "a list": lambda p: torch.save([1, 2, 3], p),
    "arbitrary object": lambda p: torch.save({"model": _NotAllowed()}, p),
    "missing keys": lambda p: _rewrite(p, lambda ck: ck.pop("optimizer")),
    "model tensor shape": lambda p: _rewrite(
        p, lambda ck: ck["model"].update({_first(ck["model"]): torch.zeros(3, 3, 3)})
    ),
    "best_state missing a tensor": lambda p: _rewrite(
        p, lambda ck: ck["best_state"].pop(_first(ck["best_state"]))
    ),
    "optimizer state shape": lambda p: _rewrite(
        p, lambda ck: ck["optimizer"]["state"][0].update({"exp_avg": torch.zeros(7)})
    ),
    "optimizer groups": lambda p: _rewrite(
        p, lambda ck: ck["optimizer"]["param_groups"][0].update({"params": [0]})
    ),
    "generator": lambda p: _rewrite(p, lambda ck: ck.update(generator=torch.zeros(3))),
    "scheduler": lambda p: _rewrite(p, lambda ck: ck.update(scheduler=None)),
    "loop state": lambda p: _rewrite(p, lambda ck: ck["state"].update(epoch="two")),
    "loop state length": lambda p: _rewrite(p, lambda ck: ck["state"]["train_loss"].pop()),
    "fingerprint": lambda p: _rewrite(p, lambda ck: ck.update(fingerprint=[1])),
    "fingerprint entry": lambda p: _rewrite(p, lambda ck: ck["fingerprint"].update(model=5)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_gives_one_clear_error(copy_of, damage):
    a, cfg, _ = copy_of
    DAMAGE[damage](cfg.checkpoint)
    with pytest.raises(CheckpointError) as info:
        density(a, cfg.replace(resume=True))
    assert type(info.value) is CheckpointError  # not a mismatch: the file itself is bad
    assert cfg.checkpoint in str(info.value)
    assert "damaged" in str(info.value)


def test_checkpoint_without_fingerprint_is_refused(copy_of):
    a, cfg, _ = copy_of
    _rewrite(cfg.checkpoint, lambda ck: ck.pop("fingerprint"))
    with pytest.raises(CheckpointError, match="no fingerprint") as info:
        density(a, cfg.replace(resume=True))
    assert cfg.checkpoint in str(info.value)
    density(a, cfg)  # resume=False starts afresh and overwrites it
    assert "fingerprint" in torch.load(cfg.checkpoint, weights_only=True)


def test_damaged_checkpoint_is_overwritten_without_resume(copy_of):
    a, cfg, model = copy_of
    _truncate(cfg.checkpoint)
    again = density(a, cfg)
    assert states_equal(again.flow, model.flow)
    assert states_equal(density(a, cfg.replace(resume=True)).flow, model.flow)


# ----------------------------------------------------------------------------- unwritable paths
def _unwritable(tmp_path, how):
    if how == "parent is a file":
        (tmp_path / "file").write_text("x")
        return str(tmp_path / "file" / "ck.pt")
    if how == "path is a directory":
        (tmp_path / "dir").mkdir()
        return str(tmp_path / "dir")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    return str(ro / "ck.pt")


@pytest.mark.parametrize("how", ["parent is a file", "path is a directory", "read-only dir"])
def test_unwritable_checkpoint_fails_before_the_first_epoch(tmp_path, how):
    if how == "read-only dir" and os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    a, b = gaussian_pair(200)
    path = _unwritable(tmp_path, how)
    seen = []
    with pytest.raises(CheckpointError, match=r"cannot be written|is a directory") as info:
        density(a, QUICK.replace(checkpoint=path), callback=lambda e, _: seen.append(e))
    assert path in str(info.value)
    assert seen == []
    # a fit of several stages checks all of them first: the morph's path is a directory
    ck = tmp_path / "stages" / "ck"
    (tmp_path / "stages" / "ck.morph").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"ck\.morph' is a directory"):
        f4f.fit_morpher(
            as_dict(a),
            as_dict(b),
            features=FEATURES,
            flow=TINY,
            density=TINY,
            train=QUICK.replace(checkpoint=str(ck)),
            callback=lambda e, _: seen.append(e),
        )
    assert seen == []
    assert not (tmp_path / "stages" / "ck.source_density").exists()


def test_probe_leaves_no_file_behind(tmp_path):
    path = tmp_path / "new" / "dir" / "ck.pt"
    loop.check_writable(path)
    assert path.parent.is_dir()
    assert list(path.parent.iterdir()) == []


# ----------------------------------------------------------------------------- exact resumes
def test_killed_morph_fit_resumes_bitwise(tmp_path):
    a, b = gaussian_pair(300)
    cfg = QUICK.replace(epochs=3, patience=None, checkpoint=str(tmp_path / "ck"))

    def fit(train, callback=None):
        return f4f.fit_morpher(
            as_dict(a),
            as_dict(b),
            features=FEATURES,
            flow=TINY,
            density=TINY,
            train=train,
            callback=callback,
        )

    full = fit(cfg.replace(checkpoint=str(tmp_path / "full")))
    calls = []

    def crash_in_morph(epoch, logs):  # epochs 1-3 source, 1-3 target, then the morph
        calls.append(epoch)
        if len(calls) == 7:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, crash_in_morph)
    resumed = fit(cfg.replace(resume=True))
    assert states_equal(resumed.module, full.module)
    assert resumed.history["morph"]["train_loss"] == full.history["morph"]["train_loss"]


def test_resumed_ensemble_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    """Members checkpoint their own replica's fingerprint: a member killed in its morph stage
    resumes exactly, and finished members resume to themselves."""
    a, b = gaussian_pair(300)
    cfg = QUICK.replace(patience=None, checkpoint=str(tmp_path / "ck"))

    def fit(train):
        return f4f.fit_morpher(
            as_dict(a),
            as_dict(b),
            features=FEATURES,
            flow=TINY,
            density=TINY,
            train=train,
            ensemble=2,
            ensemble_jobs=1,
        )

    full = fit(cfg.replace(checkpoint=str(tmp_path / "full")))
    original = loop.run_loop

    def crash_member_morph(*args, checkpoint=None, **kwargs):
        if checkpoint and checkpoint.endswith(".member2.morph"):
            kwargs["callback"] = crash_at(1)
        return original(*args, checkpoint=checkpoint, **kwargs)

    monkeypatch.setattr(loop, "run_loop", crash_member_morph)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg)
    monkeypatch.setattr(loop, "run_loop", original)
    done = torch.load(f"{cfg.checkpoint}.member2.morph", weights_only=True)["state"]
    assert (done["epoch"], done["finished"]) == (1, False)
    resumed = fit(cfg.replace(resume=True))
    assert states_equal(resumed.module, full.module)
    for m1, m2 in zip(resumed.members, full.members, strict=True):
        assert states_equal(m1, m2)
    for h1, h2 in zip(resumed.history["members"], full.history["members"], strict=True):
        assert h1["morph"]["train_loss"] == h2["morph"]["train_loss"]


@pytest.mark.parametrize("variant", ["switch", "base_transfer"])
def test_variants_without_a_morph_stage_resume_from_their_density_stages(tmp_path, variant):
    """On main ``resume=PATH`` of a switch fit looked for the morph stages only and failed."""
    a, b = gaussian_pair(300)
    ck = str(tmp_path / "ck")

    def fit(train):
        return f4f.fit_morpher(
            as_dict(a),
            as_dict(b),
            features=FEATURES,
            variant=variant,
            density=TINY,
            train=train,
        )

    first = fit(QUICK.replace(checkpoint=ck))
    again = fit(QUICK.replace(resume=ck))
    assert states_equal(again.module, first.module)
