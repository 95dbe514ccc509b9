"""Model files are verified before use, and saving never loses a model (fileformat.py).

The fuzz tests mutate saved models (bits and bytes of the weights, values, keys, types and
nesting of the config) and require every mutation either to load a model that morphs bit
for bit like the original or to raise :class:`ModelFileError`, nothing else.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import math
import os
import pickle
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import coffea_f4f as f4f
from coffea_f4f import fileformat
from coffea_f4f.config import FlowConfig
from coffea_f4f.fileformat import (
    CONFIG_FILE,
    CONFIG_HASH,
    LIMITS,
    WEIGHTS_FILE,
    WEIGHTS_HASH,
    ModelFileError,
    estimate_parameters,
)

X = np.random.default_rng(42).normal(size=(64, 2))
C = np.linspace(0.05, 0.95, 64)


def _outputs(m: f4f.Morpher) -> list[np.ndarray]:
    """What the fuzz compares: the morph (and inverse, and the band of an ensemble) on fixed
    inputs."""
    kw = {"condition": C} if m.conditions else {}
    out = [m.morph(X, **kw), m.inverse(X, **kw)]
    if m.ensemble_size >= 2:
        band = m.variations(X, **kw)
        out += [band["up"], band["down"]]
    return out


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True)
    )


def _unhash(path: Path) -> Path:
    """Make ``path`` a model as saved before the hashes (no weights_sha256, no metadata)."""
    cfg = json.loads((path / CONFIG_FILE).read_text())
    cfg.pop(WEIGHTS_HASH)
    (path / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
    save_file(
        load_file(str(path / WEIGHTS_FILE)), str(path / WEIGHTS_FILE), {"format_version": "1"}
    )
    return path


def _edit(path: Path, change) -> None:
    cfg = json.loads((path / CONFIG_FILE).read_text())
    change(cfg)
    (path / CONFIG_FILE).write_text(json.dumps(cfg))


@pytest.fixture(scope="module")
def models(tiny_morpher, tiny_conditional_morpher, tiny_ensemble):
    return {
        "plain": tiny_morpher,
        "conditional": tiny_conditional_morpher,
        "ensemble": tiny_ensemble,
    }


# ----------------------------------------------------------------------------- the error type
def test_model_file_error_is_one_exported_value_error_that_pickles():
    assert f4f.ModelFileError is ModelFileError
    assert issubclass(ModelFileError, ValueError)
    err = ModelFileError("/m/config.json", "map.dim is missing")
    assert str(err) == "/m/config.json: map.dim is missing"
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), again.source, again.problem) == (ModelFileError, err.source, err.problem)


# ----------------------------------------------------------------------------- hashes
def test_save_records_both_hashes_and_a_flipped_bit_is_refused(tiny_morpher, tmp_path):
    path = tiny_morpher.save(tmp_path / "m")
    data = (path / WEIGHTS_FILE).read_bytes()
    cfg = json.loads((path / CONFIG_FILE).read_text())
    assert cfg[WEIGHTS_HASH] == hashlib.sha256(data).hexdigest()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    assert meta[CONFIG_HASH] == fileformat.config_digest(cfg)
    ref = tiny_morpher.morph(X)
    np.testing.assert_array_equal(f4f.load(path).morph(X), ref)
    # one bit of one weight: today it would load and move events; the hash refuses it
    flipped = bytearray(data)
    flipped[len(data) - 3] ^= 0x10
    (path / WEIGHTS_FILE).write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError, match="does not match the SHA-256") as err:
        f4f.load(path)
    assert err.value.source == str(path / WEIGHTS_FILE)


def test_an_edited_config_is_refused_but_a_reformatted_one_loads(tiny_morpher, tmp_path):
    path = tiny_morpher.save(tmp_path / "m")
    cfg = json.loads((path / CONFIG_FILE).read_text())
    # layout and key order are not content
    (path / CONFIG_FILE).write_text(json.dumps(dict(reversed(cfg.items())), indent=7))
    np.testing.assert_array_equal(f4f.load(path).morph(X), tiny_morpher.morph(X))
    _edit(path, lambda c: c["scaler"]["params"][0].update(loc=0.5))
    with pytest.raises(ModelFileError, match="changed after saving") as err:
        f4f.load(path)
    assert err.value.source == str(path / CONFIG_FILE)
    (path / CONFIG_FILE).write_text(json.dumps({k: v for k, v in cfg.items() if k != WEIGHTS_HASH}))
    with pytest.raises(ModelFileError, match=f"has no {WEIGHTS_HASH}"):
        f4f.load(path)


def test_an_edit_that_breaks_the_model_says_what_it_breaks(tiny_ensemble, tmp_path):
    path = tiny_ensemble.save(tmp_path / "e")
    _edit(path, lambda c: c.update(ensemble_size=2))
    with pytest.raises(ModelFileError, match=r"changed after saving.*beyond ensemble_size=2"):
        f4f.load(path)
    _edit(path, lambda c: c.update(format_version=9))  # another version: said first
    with pytest.raises(ModelFileError, match="format version 9 is not supported"):
        f4f.load(path)


def test_models_saved_before_the_hashes_still_load(models, tmp_path):
    for name, m in models.items():
        path = _unhash(m.save(tmp_path / name))
        assert WEIGHTS_HASH not in json.loads((path / CONFIG_FILE).read_text())
        assert _same(_outputs(f4f.load(path)), _outputs(m)), name


# ----------------------------------------------------------------------------- structure
CONFIG_CASES = [  # (change to config.json, what the error says)
    (lambda c: c.pop("features"), "features is missing"),
    (lambda c: c.update(features="x"), "features must be a list"),
    (lambda c: c.update(features=["x", "x"]), "repeats a name"),
    (lambda c: c["map"].update(dim=3), r"map\.dim=3 but the model has 2 features"),
    (lambda c: c["map"].update(kind="teleport"), r"map\.kind='teleport' is not one of"),
    (lambda c: c["map"].pop("flow"), r"map\.flow is missing"),
    (lambda c: c["map"].update(flow=[1, 2]), r"map\.flow must be a JSON object, got list"),
    (lambda c: c["map"]["flow"].update(hidden=200000), r"map\.flow\.hidden=200000 is outside"),
    (lambda c: c["map"]["flow"].update(hidden="16"), r"hidden must be an integer, got '16'"),
    (lambda c: c["map"]["flow"].update(layers=True), r"layers must be an integer, got True"),
    (lambda c: c["map"]["flow"].update(tail_bound=float("nan")), r"tail_bound must be a finite"),
    (lambda c: c["map"]["flow"].update(hiden=3), "unknown FlowConfig keys"),
    (lambda c: c.update(ensemble_size=1001), r"ensemble_size=1001 is outside \[0, 1000\]"),
    (lambda c: c.update(ensemble_size=-1), "ensemble_size=-1 is outside"),
    (lambda c: c["scaler"]["kinds"].__setitem__(0, "sqrt"), r"scaler\.kinds\[0\]='sqrt'"),
    (lambda c: c["scaler"]["kinds"].__setitem__(0, "categorical"), r"scaler\.kinds\[0\]"),
    (lambda c: c["scaler"]["params"][1].update(scale=-1.0), r"params\[1\]\.scale must be a fin"),
    (lambda c: c["scaler"]["params"][1].update(scale=0), r"params\[1\]\.scale must be a finite"),
    (lambda c: c["scaler"]["params"][0].pop("loc"), r"scaler\.params\[0\]\.loc is missing"),
    (lambda c: c["scaler"]["params"].pop(), r"scaler\.params has 1 entries, expected 2"),
    (lambda c: c["target_scaler"]["names"].reverse(), r"target_scaler\.names is \['y', 'x'\]"),
    (lambda c: c.update(condition="c"), "condition_scaler is missing"),
    (lambda c: c["source_density"]["flow"].update(bins=300), r"flow\.bins=300 is outside"),
    (lambda c: c["target_density"].update(features=["y", "x"]), "target_density.features"),
    (lambda c: c.update(format_version=2), "format version 2 is not supported"),
    (lambda c: c.update(format_version="1"), "format version '1' is not supported"),
    (lambda c: c.update(format="something-else"), "not a coffea-f4f morpher config"),
    (lambda c: c.update(info={"condition_policy": "guess"}), "condition_policy='guess'"),
    (lambda c: c.update(history=[1, 2]), "history must be a JSON object"),
]


@pytest.mark.parametrize(("change", "message"), CONFIG_CASES)
def test_load_names_the_file_and_the_field(tiny_morpher, tmp_path_factory, change, message):
    path = _unhash(tiny_morpher.save(tmp_path_factory.mktemp("m") / "m"))  # no hash to hide it
    _edit(path, change)
    with pytest.raises(ModelFileError, match=message) as err:
        f4f.load(path)
    assert err.value.source == str(path / CONFIG_FILE)


def test_conditional_and_ensemble_consistency(tiny_conditional_morpher, tiny_ensemble, tmp_path):
    cases = [
        (lambda c: c["map"].update(context_dim=2), r"map\.context_dim=2 but the condition"),
        (lambda c: c.update(condition=None), "condition_scaler is given, but the model has no"),
        (lambda c: c["condition_scaler"].update(names=["d"]), r"names is \['d'\], not the mod"),
        (lambda c: c["info"].update(condition_range=[[0, 1], [0, 1]]), "has 2 entries, expe"),
        (lambda c: c["info"].update(condition_range=[[1, 0]]), "needs min <= max"),
        (lambda c: c["source_density"].update(condition=None), "source_density.condition is"),
    ]
    for i, (change, message) in enumerate(cases):
        path = _unhash(tiny_conditional_morpher.save(tmp_path / f"c{i}"))
        _edit(path, change)
        with pytest.raises(ModelFileError, match=message):
            f4f.load(path)
    path = _unhash(tiny_ensemble.save(tmp_path / "e"))
    for n, message in ((2, r"members beyond ensemble_size=2: \[3\]"), (4, "ensemble member 4")):
        _edit(path, lambda c, n=n: c.update(ensemble_size=n))
        with pytest.raises(ModelFileError, match=message) as err:
            f4f.load(path)
        assert err.value.source == str(path / WEIGHTS_FILE)


def test_weights_are_checked_against_the_architecture(tiny_morpher, tmp_path):
    def weights_case(name, change, message):
        path = _unhash(tiny_morpher.save(tmp_path / name))
        state = load_file(str(path / WEIGHTS_FILE))
        change(state)
        save_file(state, str(path / WEIGHTS_FILE))
        with pytest.raises(ModelFileError, match=message) as err:
            f4f.load(path)
        assert err.value.source == str(path / WEIGHTS_FILE)

    w = "map.flows.0.mprqat.autoregressive_net.initial_layer.weight"
    mask = "map.flows.0.mprqat.autoregressive_net.initial_layer.mask"
    weights_case("nan", lambda s: s[w].view(-1).__setitem__(3, math.nan), "non-finite")
    weights_case("inf", lambda s: s[w].view(-1).__setitem__(0, math.inf), "1 non-finite")
    weights_case("shape", lambda s: s.update({w: s[w][:, :1].contiguous()}), "has shape")
    weights_case("dtype", lambda s: s.update({w: s[w].to(torch.int32)}), "has dtype torch.int32")
    weights_case("mask", lambda s: s.update({mask: torch.ones_like(s[mask])}), "buffer that the")
    weights_case("gone", lambda s: s.pop(w), "do not fit the model's architecture")
    weights_case("extra", lambda s: s.update(stray=torch.zeros(2)), r"weights no part.*'stray'")
    weights_case("density", lambda s: s.update({"members.1.x": torch.zeros(1)}), "beyond")


def test_a_huge_claimed_architecture_is_refused_before_anything_is_built(
    tiny_morpher, tmp_path, monkeypatch
):
    path = _unhash(tiny_morpher.save(tmp_path / "m"))
    _edit(path, lambda c: c["map"]["flow"].update(hidden=4096, layers=64))

    def no_build(*a, **k):
        raise AssertionError("nothing may be built for a config the weights do not fit")

    monkeypatch.setattr(fileformat, "build_map", no_build)
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"about 2,1\d\d,\d\d\d,\d\d\d parameters"):
        f4f.load(path)
    assert time.perf_counter() - t0 < 2


def test_the_size_estimate_is_exact_for_the_layers_built():
    for kind, dim, cdim, blocks, layers in [
        ("autoregressive", 1, 0, 1, 1),
        ("autoregressive", 3, 2, 2, 3),
        ("coupling", 2, 0, 1, 2),
        ("coupling", 5, 3, 2, 3),
    ]:
        cfg = FlowConfig(kind=kind, layers=layers, hidden=8, blocks=blocks, bins=5)
        flow = fileformat.flows.build_density_flow(dim, cfg, context_dim=cdim)
        assert estimate_parameters(dim, cfg, cdim) == sum(p.numel() for p in flow.parameters())


def test_unreadable_bytes_are_one_error_naming_the_file(tiny_morpher, tmp_path):
    path = tiny_morpher.save(tmp_path / "m")
    good = (path / CONFIG_FILE).read_bytes()
    for raw, message in [
        (b"\xff\xfe" + good, "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper than the limit of 64"),
        (b'{"a": ' * 70 + b"1" + b"}" * 70, "nests deeper than the limit of 64"),
        (b"[1, 2]", "does not hold a JSON object"),
        (b"1" * 5000, "not valid JSON"),
    ]:
        (path / CONFIG_FILE).write_bytes(raw)
        with pytest.raises(ModelFileError, match=message) as err:
            f4f.load(path)
        assert err.value.source == str(path / CONFIG_FILE)
    path = _unhash(tiny_morpher.save(tmp_path / "old"))  # no hash to refuse them first
    for raw in [b"", b"garbage", (10**9).to_bytes(8, "little") + b"{}", b"\x02" + bytes(7) + b"{}"]:
        (path / WEIGHTS_FILE).write_bytes(raw)
        with pytest.raises(ModelFileError, match="safetensors"):
            f4f.load(path)
    shutil.rmtree(path)
    with pytest.raises(FileNotFoundError):
        f4f.load(path)


def test_payload_gets_the_same_checks_named_payload(tiny_ensemble):
    config, weights = tiny_ensemble.payload()
    worker = f4f.Morpher.from_payload(config, weights)
    np.testing.assert_allclose(worker.morph(X), tiny_ensemble.morph(X), rtol=1e-12)
    cfg = json.loads(config)
    bad = [
        ({**cfg, "ensemble_size": 5}, weights, "ensemble member 4"),
        ({**cfg, "map": {**cfg["map"], "dim": 4}}, weights, r"map\.dim=4"),
        ({**cfg, "scaler": {**cfg["scaler"], "kinds": "standard"}}, weights, "kinds must be a"),
        (cfg, weights[:100], "safetensors"),
        (cfg, b"\x00" * 8, "safetensors"),
    ]
    for c, w, message in bad:
        with pytest.raises(ModelFileError, match=message) as err:
            f4f.Morpher.from_payload(json.dumps(c).encode(), w)
        assert err.value.source == "payload"
    with pytest.raises(ModelFileError, match="payload: config is not valid JSON"):
        f4f.Morpher.from_payload(b"{", weights)
    # a payload may leave out the MADE masks; if it holds them they must be the rebuilt ones
    from safetensors.torch import load as load_bytes
    from safetensors.torch import save as save_bytes

    state = load_bytes(weights)
    key = "map.flows.0.mprqat.autoregressive_net.final_layer.mask"
    assert key not in state
    state[key] = torch.ones(tiny_ensemble.module.state_dict()[key[4:]].shape)
    with pytest.raises(ModelFileError, match="buffer that the architecture determines"):
        f4f.Morpher.from_payload(config, save_bytes(state))


# ----------------------------------------------------------------------------- saving
def _other(m: f4f.Morpher) -> f4f.Morpher:
    """A copy of ``m`` with different map weights (so a replaced model is told apart)."""
    other = copy.copy(m)
    other.module = copy.deepcopy(m.module)
    with torch.no_grad():
        for p in other.module.parameters():
            p.add_(0.01)
    other._applied_cache = {}
    return other


def test_save_replaces_a_model_and_refuses_other_directories(tiny_morpher, tmp_path):
    path = tiny_morpher.save(tmp_path / "m")
    other = _other(tiny_morpher)
    assert other.save(path) == path  # a model is replaced
    np.testing.assert_array_equal(f4f.load(path).morph(X), other.morph(X))
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary or backup left

    busy = tmp_path / "results"
    busy.mkdir()
    (busy / "plot.png").write_bytes(b"png")
    (busy / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"results .*it holds plot\.png\)"):
        tiny_morpher.save(busy)
    assert sorted(os.listdir(busy)) == ["config.json", "plot.png"]  # untouched
    foreign = tmp_path / "hf"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(FileExistsError, match="not a coffea-f4f config"):
        tiny_morpher.save(foreign)
    tiny_morpher.save(busy, overwrite=True)
    assert sorted(os.listdir(busy)) == [CONFIG_FILE, WEIGHTS_FILE]
    file = tmp_path / "model.txt"
    file.write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        tiny_morpher.save(file)
    tiny_morpher.save(file, overwrite=True)
    np.testing.assert_array_equal(f4f.load(file).morph(X), tiny_morpher.morph(X))
    empty = tmp_path / "empty"
    empty.mkdir()
    tiny_morpher.save(empty)  # an empty directory is fine
    tiny_morpher.save(tmp_path / "a" / "b" / "c")  # parents are created


def _failing(where: str, monkeypatch) -> None:
    """Make saving fail at ``where``."""
    import safetensors.torch

    if where == "serialise":

        def boom(*a, **k):
            raise RuntimeError("simulated failure in the safetensors writer")

        monkeypatch.setattr(safetensors.torch, "save", boom)
    elif where == "disk full":
        real = fileformat._write_file

        def half(file: Path, data: bytes) -> None:
            if file.name == CONFIG_FILE:
                file.write_bytes(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device", str(file))
            real(file, data)

        monkeypatch.setattr(fileformat, "_write_file", half)
    elif where in ("rename", "interrupt"):
        real_replace = os.replace
        calls = []

        def second_fails(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                if where == "interrupt":
                    raise KeyboardInterrupt
                raise OSError(errno.EIO, "simulated rename failure")
            real_replace(src, dst)

        monkeypatch.setattr(fileformat.os, "replace", second_fails)


@pytest.mark.parametrize("where", ["serialise", "disk full", "rename", "interrupt"])
def test_a_failed_save_leaves_the_previous_model_loadable(tiny_morpher, tmp_path, where):
    path = tiny_morpher.save(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.MonkeyPatch.context() as mp:
        _failing(where, mp)
        with pytest.raises((RuntimeError, OSError, KeyboardInterrupt)):
            _other(tiny_morpher).save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    np.testing.assert_array_equal(f4f.load(path).morph(X), tiny_morpher.morph(X))
    assert sorted(os.listdir(tmp_path)) == ["m"]  # the temporary directory is gone
    with pytest.MonkeyPatch.context() as mp:  # and a first save leaves nothing behind
        _failing("disk full" if where in ("rename", "interrupt") else where, mp)
        with pytest.raises((RuntimeError, OSError, KeyboardInterrupt)):
            tiny_morpher.save(tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_save_refuses_what_load_would_refuse(tiny_morpher, tmp_path):
    big = copy.copy(tiny_morpher)
    big.map_spec = {**big.map_spec, "flow": {**big.map_spec["flow"], "hidden": 5000}}
    with pytest.raises(ModelFileError, match=r"refusing to save.*hidden=5000 is outside"):
        big.save(tmp_path / "big")
    broken = _other(tiny_morpher)
    with torch.no_grad():
        next(broken.module.parameters()).view(-1)[0] = math.nan
    with pytest.raises(ModelFileError, match=r"refusing to save.*non-finite"):
        broken.save(tmp_path / "nan")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- fuzz
_POOL: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    3,
    10**6,
    10**30,
    -(10**30),
    1e308,
    -1e-308,
    math.nan,
    math.inf,
    "",
    "x",
    "standard",
    "log",
    "categorical",
    "coupling",
    "flow",
    [],
    {},
    [1, 2],
    ["x", "y"],
    {"kind": "flow"},
]


def _nodes(obj: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _nodes(v, (*path, i))
    return out


def _deep(depth: int) -> Any:
    v: Any = 1
    for _ in range(depth):
        v = [v]
    return v


def _mutate_config(rng: random.Random, cfg: dict[str, Any]) -> tuple[str, bytes]:
    """One random mutation of a parsed config, as the bytes of config.json."""
    op = rng.choice(
        ["delete", "replace", "replace", "number", "swap", "rename", "wrap", "deep", "raw"]
    )
    if op == "raw":  # the text itself
        text = bytearray(json.dumps(cfg, indent=2).encode())
        how = rng.choice(["truncate", "byte", "invalid utf-8", "nest"])
        if how == "truncate":
            return "raw truncate", bytes(text[: rng.randrange(len(text))])
        if how == "byte":
            text[rng.randrange(len(text))] = rng.randrange(256)
            return "raw byte", bytes(text)
        if how == "invalid utf-8":
            i = rng.randrange(len(text))
            return "raw invalid utf-8", bytes(text[:i] + b"\xc3\x28" + text[i:])
        return "raw nest", b'{"history": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    cfg = copy.deepcopy(cfg)
    path = rng.choice(_nodes(cfg)[1:])
    parent = cfg
    for k in path[:-1]:
        parent = parent[k]
    key, value = path[-1], parent[path[-1]]
    label = f"{op} {'.'.join(map(str, path))}"
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = copy.deepcopy(rng.choice([*_POOL, str(value)]))
    elif op == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            parent[key] = 7
        else:
            parent[key] = rng.choice(
                [-value, 2 * value, value + 1, value - 1, value * 1e300, float(value), str(value)]
            )
    elif op == "swap" and isinstance(parent, list) and len(parent) >= 2:
        i, j = rng.sample(range(len(parent)), 2)
        parent[i], parent[j] = parent[j], parent[i]
    elif op == "swap" and isinstance(parent, dict) and len(parent) >= 2:
        a, b = rng.sample(list(parent), 2)
        parent[a], parent[b] = parent[b], parent[a]
    elif op == "rename" and isinstance(parent, dict):
        parent[f"{key}_"] = parent.pop(key)
    elif op == "deep":
        parent[key] = _deep(rng.choice([10, 63, 64, 65, 500]))
    else:
        parent[key] = [value]
    return label, json.dumps(cfg).encode()


def _mutate_weights(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One random mutation of the bytes of weights.safetensors."""
    b = bytearray(data)
    n = int.from_bytes(data[:8], "little")
    how = rng.choice(
        ["bit", "bit", "header bit", "header byte", "truncate", "append", "zero", "nan", "length"]
    )
    if how == "bit":
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    elif how == "header bit":
        i = rng.randrange(8, 8 + n)
        b[i] ^= 1 << rng.randrange(8)
    elif how == "header byte":
        b[rng.randrange(8, 8 + n)] = rng.choice(b'{}[],:"0123456789 \x00\xff')
    elif how == "truncate":
        b = b[: rng.randrange(len(b))]
    elif how == "append":
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    elif how == "zero":
        i = rng.randrange(8 + n, len(b) - 16)
        b[i : i + 16] = bytes(16)
    elif how == "nan":
        i = rng.randrange(8 + n, len(b) - 4) & ~3
        b[i : i + 4] = np.float32(math.nan).tobytes()
    else:
        b[:8] = rng.choice([0, 1, n - 1, n + 1, 2**40, 2**64 - 1]).to_bytes(8, "little")
    return how, bytes(b)


def _attempt(build, what: str = ""):
    """``(model, None)``, or ``(None, error)`` for a ModelFileError; any other exception is
    what these tests exist to catch."""
    try:
        return build(), None
    except ModelFileError as err:
        return None, err
    except Exception as err:  # pragma: no cover
        raise AssertionError(
            f"{what}: {type(err).__name__} escaped instead of ModelFileError"
        ) from err


def _fuzz(models, root: Path, n_per_model: int, seed: int, *, hashed: bool) -> dict[str, int]:
    """Mutate each saved model ``n_per_model`` times; every mutation must load identically
    (hashed files) or at all (unhashed: numbers can change undetectably), or raise
    ModelFileError naming the file. Returns the counts."""
    rng = random.Random(seed)
    counts = {"mutations": 0, "identical": 0, "ModelFileError": 0, "changed": 0}
    for name, m in models.items():
        ref = _outputs(m)
        path = m.save(root / f"{name}-{seed}-{hashed}")
        if not hashed:
            _unhash(path)
        cfg_bytes = (path / CONFIG_FILE).read_bytes()
        w_bytes = (path / WEIGHTS_FILE).read_bytes()
        cfg = json.loads(cfg_bytes)
        for _ in range(n_per_model):
            if rng.random() < 0.5:
                label, new_cfg = _mutate_config(rng, cfg)
                new_w = w_bytes
            else:
                label, new_w = _mutate_weights(rng, w_bytes)
                new_cfg = cfg_bytes
            (path / CONFIG_FILE).write_bytes(new_cfg)
            (path / WEIGHTS_FILE).write_bytes(new_w)
            counts["mutations"] += 1
            loaded, err = _attempt(lambda p=path: f4f.load(p), f"{name}: {label}")
            if err is not None:
                assert err.source.startswith(str(path)), (label, err)
                counts["ModelFileError"] += 1
                continue
            try:
                same = _same(_outputs(loaded), ref)
            except ValueError:  # a changed (unhashed) scaling may refuse the inputs
                same = False
            if same:
                counts["identical"] += 1
            else:
                assert not hashed, f"{name}: {label}: loaded a silently wrong model"
                counts["changed"] += 1
    print(f"\nfuzz (hashed={hashed}, seed={seed}): {counts}")
    return counts


def _fuzz_payload(models, n_per_model: int, seed: int) -> dict[str, int]:
    """The same for the worker payload (no hash: structure only)."""
    rng = random.Random(seed)
    counts = {"mutations": 0, "identical": 0, "ModelFileError": 0, "changed": 0}
    for name, m in models.items():
        cfg_bytes, w_bytes = m.payload()
        ref = _outputs(f4f.Morpher.from_payload(cfg_bytes, w_bytes))
        cfg = json.loads(cfg_bytes)
        for _ in range(n_per_model):
            if rng.random() < 0.5:
                label, new_cfg, new_w = (*_mutate_config(rng, cfg), w_bytes)
            else:
                label, new_w = _mutate_weights(rng, w_bytes)
                new_cfg = cfg_bytes
            counts["mutations"] += 1
            loaded, err = _attempt(
                lambda c=new_cfg, w=new_w: f4f.Morpher.from_payload(c, w), f"{name}: {label}"
            )
            if err is not None:
                assert err.source == "payload", (label, err)
                counts["ModelFileError"] += 1
                continue
            try:
                same = _same(_outputs(loaded), ref)
            except ValueError:
                same = False
            counts["identical" if same else "changed"] += 1
    print(f"\nfuzz (payload, seed={seed}): {counts}")
    return counts


def test_fuzz_load(models, tmp_path):
    t0 = time.perf_counter()
    hashed = _fuzz(models, tmp_path, 70, seed=1, hashed=True)
    assert hashed["changed"] == 0  # silently wrong: none
    assert hashed["ModelFileError"] > 0.9 * hashed["mutations"]
    old = _fuzz(models, tmp_path, 40, seed=2, hashed=False)
    assert old["ModelFileError"] > 0.5 * old["mutations"]
    payload = _fuzz_payload(models, 25, seed=3)
    assert payload["ModelFileError"] > 0.5 * payload["mutations"]
    print(f"fuzz: {time.perf_counter() - t0:.1f} s")


@pytest.mark.slow
def test_fuzz_load_long(models, tmp_path):
    total = {"mutations": 0, "identical": 0, "ModelFileError": 0, "changed": 0}
    for seed in range(10, 14):
        counts = _fuzz(models, tmp_path, 400, seed=seed, hashed=True)
        total = {k: total[k] + counts[k] for k in total}
        _fuzz(models, tmp_path, 150, seed=seed + 100, hashed=False)
        _fuzz_payload(models, 100, seed=seed + 200)
    print(f"\nfuzz long, hashed: {total}")
    assert total["changed"] == 0


# ----------------------------------------------------------------------------- properties
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@hypothesis.settings(max_examples=50, deadline=None)
@hypothesis.given(where=st.integers(0, 10**6), value=_json)
def test_any_json_value_anywhere_loads_or_is_one_error(tiny_conditional_morpher, where, value):
    cfg, weights = tiny_conditional_morpher.payload()
    config = json.loads(cfg)
    path = _nodes(config)[1:][where % (len(_nodes(config)) - 1)]
    parent = config
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    _, err = _attempt(lambda: f4f.Morpher.from_payload(json.dumps(config).encode(), weights))
    assert err is None or err.source == "payload"


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(start=st.integers(0, 10**6), patch=st.binary(min_size=1, max_size=12))
def test_any_patched_payload_bytes_load_or_are_one_error(tiny_morpher, start, patch):
    cfg, weights = tiny_morpher.payload()
    i = start % len(weights)
    mutated = weights[:i] + patch + weights[i + len(patch) :]
    loaded, err = _attempt(lambda: f4f.Morpher.from_payload(cfg, mutated))
    if err is None:
        loaded.morph(X)  # it runs (a payload has no hash: the values may differ)
    else:
        assert err.source == "payload"


def test_limits_are_generous_for_real_use():
    wanted = {"hidden": 4096, "layers": 64, "bins": 256, "dim": 1024, "ensemble_size": 1000}
    assert all(LIMITS[k] >= v for k, v in wanted.items())
    default = FlowConfig()
    for key in ("layers", "hidden", "blocks", "bins"):
        assert getattr(default, key) <= LIMITS[key]
