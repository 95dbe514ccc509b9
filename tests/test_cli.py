"""The ``coffea-f4f`` command: train (TOML) -> apply -> evaluate on small generated ROOT files,
the sizes the user sets (``--events``, ``--epochs``), apply's compression and types, the
progress switches, ``--help`` of every command, and one-line errors (exit code 2, no
traceback)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coffea_f4f import config, datasets, demo, progress
from coffea_f4f.cli import main
from coffea_f4f.cli import train as cli_train
from coffea_f4f.cli.errors import CLIError
from coffea_f4f.cli.inputs import InputSpec, parse_input
from coffea_f4f.cli.train import build_job, load_config
from coffea_f4f.config import FlowConfig, TrainConfig

ak = pytest.importorskip("awkward")
uproot = pytest.importorskip("uproot")

N_EVENTS = 2000
FEATURES = ["mj1", "delta_mj"]
TINY_TOML = """
[flow]
layers = 2
hidden = 16
blocks = 1
[density]
layers = 2
hidden = 16
blocks = 1
[train]
epochs = 2
batch_size = 256
num_threads = 1
"""


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """The C2ST classifier uses OpenMP; on a shared 2-core machine one thread is much faster."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


def _events(kind: str, seed: int) -> dict:
    """Dijet features, an event number and a jagged ``Jet`` collection (pt, mass)."""
    ev = datasets.dijet(N_EVENTS, kind=kind, seed=seed)
    data = {f: ak.to_numpy(ev[f]) for f in ev.fields}
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, N_EVENTS)
    n = int(counts.sum())
    shift = 5.0 if kind == "data" else 0.0
    data["event"] = np.arange(N_EVENTS, dtype=np.uint64)
    data["flag"] = rng.uniform(size=N_EVENTS) < 0.5
    data["Jet"] = ak.zip(
        {
            "pt": ak.unflatten(rng.exponential(50.0, n).astype(np.float32) + 20, counts),
            "mass": ak.unflatten(rng.exponential(10.0, n).astype(np.float32) + 1 + shift, counts),
        }
    )
    return data


def _write_root(path: Path, data: dict) -> Path:
    types = {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()}
    with uproot.recreate(path) as f:
        f.mktree(
            "Events",
            types,
            counter_name=lambda c: "n" + c,
            field_name=lambda outer, inner: f"{outer}_{inner}",
        )
        f["Events"].extend(data)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-files")
    sim, data = _events("sim", 1), _events("data", 2)
    ak.to_parquet(ak.Array({f: data[f] for f in FEATURES}), d / "data.parquet")
    return {
        "dir": d,
        "sim": _write_root(d / "sim.root", sim),
        "data": _write_root(d / "data.root", data),
        "parquet": d / "data.parquet",
    }


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(files) -> dict:
    """``coffea-f4f train`` on a TOML config (ROOT source, parquet target); its outputs."""
    cfg = files["dir"] / "train.toml"
    cfg.write_text(
        'source = "sim.root:Events"\n'
        'target = "data.parquet"\n'
        f"features = {json.dumps(FEATURES)}\n"
        'output = "model"\n'
        "max_events = 1500\n"
        'scaling = { mj1 = "log" }\n' + TINY_TOML
    )
    code, out, err = _run("train", cfg, "--no-progress")
    return {"code": code, "out": out, "err": err, "model": files["dir"] / "model"}


def _one_line_error(code: int, err: str, command: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    prefix = f"coffea-f4f {command}".strip()
    assert lines[0].startswith(f"{prefix}: error: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------ train
def test_train_writes_a_loadable_model_and_a_summary(trained):
    from coffea_f4f import load

    assert trained["code"] == 0, trained["err"]
    assert (trained["model"] / "config.json").is_file()
    assert (trained["model"] / "weights.safetensors").is_file()
    morpher = load(trained["model"])
    assert morpher.features == FEATURES
    assert morpher.variant == "bidirectional"
    assert morpher.scaler.kinds == ["log", "standard"]
    assert morpher.history["morph"]["epochs_run"] == 2
    assert "read 1500 source and 1500 target events" in trained["out"]
    assert "Saved the model to" in trained["out"]
    assert trained["err"] == ""  # --no-progress: no bars


def _history_epochs(model_dir) -> dict[str, int]:
    from coffea_f4f import load

    history = load(model_dir).history
    return {stage: history[stage]["epochs_run"] for stage in history}


def test_train_events_and_epochs_override_the_config(files, monkeypatch):
    """``--events`` and ``--epochs`` beat max_events, [train] and [density_train] epochs;
    the training bars show (stderr) when not switched off."""
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    cfg = _config(
        files,
        "sizes.toml",
        'source = "sim.root:Events"\ntarget = "data.root:Events"\n'
        f'features = {json.dumps(FEATURES)}\noutput = "sizes"\nmax_events = 1500\n'
        + TINY_TOML
        + "[density_train]\nepochs = 3\nbatch_size = 256\nnum_threads = 1\n",
    )
    code, out, err = _run("train", cfg, "--events", "600", "--epochs", "1")
    assert code == 0, err
    assert "read 600 source and 600 target events" in out
    assert _history_epochs(files["dir"] / "sizes") == {
        "morph": 1,
        "source_density": 1,
        "target_density": 1,
    }
    for label in ("source density", "target density", "morph", "step/s", "epoch 1/1"):
        assert label in err, (label, err)
    code, out, err = _run("train", cfg, "--max-events", "500", "--no-progress")
    assert code == 0, err
    assert "read 500 source and 500 target events" in out  # the old spelling still works
    assert _history_epochs(files["dir"] / "sizes")["source_density"] == 3
    assert _history_epochs(files["dir"] / "sizes")["morph"] == 2


def test_yaml_config_gives_the_same_job_as_toml(tmp_path):
    pytest.importorskip("yaml")
    tmp_path = tmp_path.resolve()
    toml = tmp_path / "a.toml"
    toml.write_text(
        'source = ["s.root:T", "t.root"]\ntarget = "x.parquet"\nfeatures = ["a"]\n'
        'output = "m"\npenalty = "l2"\npenalty_weight = 0.5\n[train]\nepochs = 3\n'
        'patience = "none"\n'
    )
    yaml = tmp_path / "a.yaml"
    yaml.write_text(
        "source: [s.root:T, t.root]\ntarget: x.parquet\nfeatures: [a]\noutput: m\n"
        "penalty: l2\npenalty_weight: 0.5\ntrain: {epochs: 3, patience: null}\n"
    )
    jobs = [build_job(load_config(p), path=p) for p in (toml, yaml)]
    assert jobs[0] == jobs[1]
    job = jobs[0]
    assert job.source == [f"{tmp_path}/s.root:T", f"{tmp_path}/t.root:Events"]
    assert job.target == [f"{tmp_path}/x.parquet"]
    assert job.output == tmp_path / "m"
    assert job.options["train"] == TrainConfig(epochs=3, patience=None)


def test_config_choices_are_the_config_modules():
    """The CLI checks variants and penalties against coffea_f4f.config, not a copy."""
    assert cli_train.VARIANTS is config.VARIANTS
    assert cli_train.PENALTIES is config.PENALTIES


def test_help_and_config_checking_import_no_torch(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('source = "s.root"\ntarget = "t.root"\nfeatures = ["a"]\n[train]\nepochs = 2\n')
    code = (
        "import sys; from pathlib import Path; from coffea_f4f.cli import main; "
        "from coffea_f4f.cli.train import build_job, load_config; "
        "p = Path(sys.argv[1]); build_job(load_config(p), path=p); main(['--help']); "
        "sys.exit(int('torch' in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("spec", "path", "tree"),
    [
        ("a.root:Events", "a.root", "Events"),
        ("dir/a.root", "dir/a.root", "Events"),
        ("a.root:dir/T", "a.root", "dir/T"),
        ("b.parquet", "b.parquet", None),
        ("root://host//store/a.root:T", "root://host//store/a.root", "T"),
        ("root://host//store/a.root", "root://host//store/a.root", "Events"),
    ],
)
def test_parse_input(spec, path, tree):
    assert parse_input(spec) == InputSpec(path, tree)


# ------------------------------------------------------------------------------------ apply
def test_apply_copies_branches_and_adds_the_morphed_ones(trained, files, tmp_path):
    from coffea_f4f import load

    out = tmp_path / "out.root"
    code, stdout, err = _run(
        "apply", trained["model"], files["sim"], out, "--step-size", "700", "--no-progress"
    )
    assert code == 0, err
    assert "mj1 -> mj1_morphed (float64)" in stdout
    src = uproot.open(files["sim"])["Events"]
    got = uproot.open(out)["Events"]
    assert got.num_entries == N_EVENTS
    assert set(got.keys()) == set(src.keys()) | {"mj1_morphed", "delta_mj_morphed"}
    a, b = src.arrays(library="ak"), got.arrays(library="ak")
    copied = src.keys()  # every branch name (uproot: sub-branches too)
    for name in copied:  # copied unchanged, with its type (uproot writes counters as int32)
        assert ak.all(a[name] == b[name]), name
        assert got[name].interpretation == src[name].interpretation, name
    assert got["event"].interpretation.to_dtype == np.uint64
    assert got["flag"].interpretation.to_dtype == np.bool_
    assert got["mj1_morphed"].interpretation.to_dtype == np.float64  # float64 stays
    x = np.stack([ak.to_numpy(a[f]).astype(np.float64) for f in FEATURES], axis=1)
    expected = load(trained["model"]).morph(x)
    for j, f in enumerate(FEATURES):
        np.testing.assert_allclose(
            ak.to_numpy(b[f"{f}_morphed"]), expected[:, j], rtol=1e-12, atol=1e-12
        )


def test_apply_morphs_jagged_branches_with_a_condition(files, tmp_path):
    """A per-object model (features named apart from the branches) with an event-level
    condition: the morphed branch shares the collection's counter."""
    from coffea_f4f.train import fit_morpher

    sim, data = _events("sim", 1), _events("data", 2)

    def flat(d):
        counts = ak.to_numpy(ak.num(d["Jet"]))
        return {
            "mass": ak.to_numpy(ak.flatten(d["Jet"].mass)).astype(float),
            "pt": ak.to_numpy(ak.flatten(d["Jet"].pt)).astype(float),
            "m": np.repeat(d["mjj"], counts),
        }

    tiny = FlowConfig(layers=2, hidden=16, blocks=1)
    morpher = fit_morpher(
        flat(sim),
        flat(data),
        features=["mass", "pt"],
        condition="m",
        flow=tiny,
        density=tiny,
        train=TrainConfig(epochs=1, progress=False, num_threads=1),
    )
    morpher.save(tmp_path / "jet-model")
    out = tmp_path / "jets.root"
    code, _, err = _run(
        "apply",
        tmp_path / "jet-model",
        f"{files['sim']}:Events",
        out,
        "--branch",
        "mass=Jet_mass",
        "--branch",
        "pt=Jet_pt",
        "--condition-branch",
        "mjj",
        "--suffix",
        "_new",
        "--step-size",
        "600",
        "--no-progress",
    )
    assert code == 0, err
    tree = uproot.open(out)["Events"]
    assert tree["Jet_mass_new"].count_branch.name == "nJet"
    got = tree.arrays(["Jet_mass_new", "Jet_pt_new", "nJet"], library="ak")
    f = flat(sim)
    expected = morpher.morph(np.stack([f["mass"], f["pt"]], axis=1), condition=f["m"])
    assert ak.all(got["nJet"] == ak.num(sim["Jet"]))
    # float32 inputs get float32 morphed branches (morphed in float64, then rounded once)
    for j, name in enumerate(["Jet_mass_new", "Jet_pt_new"]):
        assert tree[name].interpretation.content.to_dtype == np.float32, name
        np.testing.assert_array_equal(
            ak.to_numpy(ak.flatten(got[name])), expected[:, j].astype(np.float32)
        )
    assert not np.allclose(expected[:, 0], f["mass"], rtol=1e-3)  # the morph moved them

    # float32 application: float32 in, float32 out; a float64 input stays float64
    code, stdout, err = _run(
        "apply",
        tmp_path / "jet-model",
        files["sim"],
        tmp_path / "jets32.root",
        "--branch",
        "mass=Jet_mass",
        "--branch",
        "pt=Jet_pt",
        "--condition-branch",
        "mjj",
        "--precision",
        "float32",
        "--no-progress",
    )
    assert code == 0, err
    assert "Jet_mass -> Jet_mass_morphed (float32)" in stdout
    got32 = uproot.open(tmp_path / "jets32.root")["Events"]["Jet_mass_morphed"].array()
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(got32)), expected[:, 0], rtol=1e-4, atol=1e-4)


def test_apply_compression_makes_the_output_smaller(trained, files, tmp_path):
    sizes = {}
    for codec, level in (("none", None), ("zlib", "1"), ("lz4", None), ("zstd", None)):
        out = tmp_path / f"{codec}.root"
        args = ["apply", trained["model"], files["sim"], out, "--no-progress"]
        args += ["--compression", codec] + (["--compression-level", level] if level else [])
        code, stdout, err = _run(*args)
        assert code == 0, err
        assert f"compression {codec}" in stdout
        sizes[codec] = out.stat().st_size
        if codec != "none":
            assert uproot.open(out).file.compression.name == codec.upper()
    default = tmp_path / "default.root"
    assert _run("apply", trained["model"], files["sim"], default, "--no-progress")[0] == 0
    assert uproot.open(default).file.compression == uproot.ZLIB(1)  # the default
    # measured on these random-valued columns: zlib 0.82, zstd 0.84, lz4 0.95 of none
    assert sizes["zlib"] < 0.88 * sizes["none"], sizes
    assert sizes["zstd"] < 0.88 * sizes["none"], sizes
    assert sizes["lz4"] < sizes["none"], sizes


def test_progress_switch_turns_every_bar_off(trained, files, tmp_path, monkeypatch):
    """``COFFEA_F4F_PROGRESS=0`` hides the training and the apply bars; without it, and
    without --no-progress, both show on stderr (printed once: it is not a terminal)."""
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    code, _, err = _run("apply", trained["model"], files["sim"], tmp_path / "a.root")
    assert code == 0, err
    assert "apply" in err
    assert f"{N_EVENTS}/{N_EVENTS}" in err
    assert "ev/s" in err
    assert err.count("ev/s") == 1  # not a terminal: one line, no redraws
    assert "\x1b[" not in err  # no colour codes

    monkeypatch.setenv(progress.ENV_VAR, "0")
    code, _, err = _run("apply", trained["model"], files["sim"], tmp_path / "b.root")
    assert code == 0, err
    assert err == ""
    cfg = files["dir"] / "train.toml"  # the trained fixture's config
    model = tmp_path / "quiet"
    code, _, err = _run("train", cfg, "--events", "300", "--epochs", "1", "--output", model)
    assert code == 0, err
    assert err == ""
    assert _history_epochs(model)["morph"] == 1


def test_train_and_evaluate_jagged_branches_with_an_event_level_condition(files, tmp_path):
    """Per-object features (Jet_*) conditioned on a per-event branch: trained and evaluated
    per object, the condition used for every object of its event."""
    cfg = tmp_path / "jets.toml"
    cfg.write_text(
        f"source = {json.dumps(str(files['sim']))}\n"
        f"target = {json.dumps(str(files['data']))}\n"
        'features = ["Jet_mass", "Jet_pt"]\ncondition = "mjj"\noutput = "jets"\n'
        "max_events = 800\n" + TINY_TOML.replace("epochs = 2", "epochs = 1")
    )
    code, _, err = _run("train", cfg, "--no-progress")
    assert code == 0, err
    out = tmp_path / "eval"
    code, _, err = _run(
        "evaluate",
        tmp_path / "jets",
        "--source",
        files["sim"],
        "--target",
        files["data"],
        "--out",
        out,
        "--max-events",
        "800",
        "--no-plots",
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    n_jets = int(ak.sum(uproot.open(files["sim"])["Events"]["nJet"].array(entry_stop=800)))
    assert metrics["n_source"] == n_jets
    assert metrics["features"] == ["Jet_mass", "Jet_pt"]


# ------------------------------------------------------------------------------------ evaluate
def test_evaluate_prints_and_writes_metrics_and_plots(trained, files, tmp_path):
    out = tmp_path / "eval"
    code, stdout, err = _run(
        "evaluate",
        trained["model"],
        "--source",
        files["sim"],
        "--target",
        f"{files['data']}:Events",
        "--out",
        out,
        "--max-events",
        "800",
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "auc_before",
        "sigma_before",
        "auc_after",
        "sigma_after",
        "w1_before",
        "w1_after",
        "w1_floor",
        "distance_mean",
        "distance_std",
        "transport_ratio",
        "n_source",
        "n_target",
        "features",
        "variant",
        "model",
    ):
        assert key in metrics, key
    assert metrics["n_source"] == metrics["n_target"] == 800
    assert metrics["standardized"] is True
    assert metrics["features"] == FEATURES
    assert len(metrics["w1_after"]) == 2
    assert 0 <= metrics["auc_after"] <= 1
    assert metrics["transport_ratio"] is None or metrics["transport_ratio"] >= 1
    assert (out / "feature_comparison.png").stat().st_size > 1000
    assert (out / "loss_curves.png").stat().st_size > 1000
    assert "AUC morphed vs target" in stdout
    assert "transport ratio" in stdout


def test_evaluate_an_ensemble_reports_and_draws_its_band(files, tmp_path, monkeypatch):
    """A model with a bootstrap ensemble: metrics.json has the band's W1 and the members'
    AUCs, the table prints them, band.png is drawn."""
    import matplotlib.pyplot as plt

    from coffea_f4f import plots
    from coffea_f4f.train import fit_morpher

    # drawing is most of the time: small PNGs, and the plots of any model are the plain
    # evaluate test's
    monkeypatch.setattr(plots, "DPI", 30)
    for name in ("feature_comparison", "loss_curves"):
        monkeypatch.setattr(plots, name, lambda *args, **kwargs: plt.figure())

    sim, data = (
        {k: ak.to_numpy(v) for k, v in zip(ev.fields, ak.unzip(ev), strict=True)}
        for ev in (datasets.dijet(1200, kind=k, seed=s) for k, s in (("sim", 21), ("data", 22)))
    )
    tiny = FlowConfig(layers=2, hidden=16, blocks=1, bins=6)
    model = fit_morpher(
        sim,
        data,
        features=FEATURES,
        condition="mjj",
        scaling={"mj1": "log"},
        flow=tiny,
        density=tiny,
        train=TrainConfig(epochs=1, batch_size=256, progress=False, num_threads=1),
        ensemble=2,
        ensemble_jobs=1,
    ).save(tmp_path / "ensemble")
    out = tmp_path / "eval"
    code, stdout, err = _run(
        "evaluate",
        model,
        "--source",
        files["sim"],
        "--target",
        files["data"],
        "--out",
        out,
        "--max-events",
        "400",
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ensemble_size"] == 2
    assert len(metrics["w1_up"]) == len(metrics["w1_down"]) == 2
    assert metrics["w1_up"] != metrics["w1_down"]
    assert len(metrics["auc_members"]) == 2
    assert all(0 <= a <= 1 for a in metrics["auc_members"])
    assert metrics["auc_members_mean"] == pytest.approx(np.mean(metrics["auc_members"]))
    assert metrics["auc_members_std"] == pytest.approx(np.std(metrics["auc_members"], ddof=1))
    assert f"down {metrics['w1_down'][0]:.3f}; floor" in stdout
    assert "K=2)" in stdout
    assert (out / "band.png").stat().st_size > 1000
    assert "band.png" in stdout


# ------------------------------------------------------------------------------------ help
@pytest.mark.parametrize("command", [[], ["demo"], ["train"], ["apply"], ["evaluate"]])
def test_help_of_every_command(command, capsys):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: coffea-f4f {' '.join(command)}".rstrip())
    if command == ["train"]:
        assert "config keys" in out
        assert "[train]" in out
    if command == ["apply"]:
        assert "Jagged" in out


def test_console_script_help():
    script = Path(sys.executable).parent / "coffea-f4f"
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for command in ("demo", "train", "apply", "evaluate"):
        assert command in proc.stdout


# ------------------------------------------------------------------------------------ errors
def _config(files, name: str, text: str) -> Path:
    path = files["dir"] / name
    path.write_text(text)
    return path


GOOD_HEAD = 'source = "sim.root"\ntarget = "data.root"\nfeatures = ["mj1"]\noutput = "m"\n'


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("missing-config", "no such config file"),
        ("bad-toml", "invalid TOML"),
        ("bad-key", "unknown key 'outptu' (did you mean 'output'?)"),
        ("bad-table-key", "[train]: unknown key 'epoch' (did you mean 'epochs'?)"),
        ("bad-value", "FlowConfig.layers=0"),
        ("bad-variant", "did you mean 'bidirectional'?"),
        ("unknown-branch", "branch 'mj11' not found. Did you mean 'mj1'"),
        ("missing-input", "no such file"),
        ("no-yaml", "YAML configs need PyYAML"),
    ],
)
def test_train_errors_are_one_line(case, expect, files, monkeypatch):
    configs = {
        "missing-config": None,
        "bad-toml": 'source = "sim.root\n',
        "bad-key": GOOD_HEAD + "outptu = 'x'\n",
        "bad-table-key": GOOD_HEAD + "[train]\nepoch = 2\n",
        "bad-value": GOOD_HEAD + "[flow]\nlayers = 0\n",
        "bad-variant": GOOD_HEAD + "variant = 'bidirectinal'\n",
        "unknown-branch": GOOD_HEAD.replace('"mj1"', '"mj11"'),
        "missing-input": GOOD_HEAD.replace("sim.root", "nope.root"),
    }
    if case == "missing-config":
        path = files["dir"] / "nope.toml"
    elif case == "no-yaml":
        monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
        path = _config(files, "c.yaml", "source: sim.root\n")
    else:
        path = _config(files, f"{case}.toml", configs[case])
    line = _one_line_error(*_run("train", path, "--no-progress")[::2], "train")
    assert expect in line


def test_apply_and_evaluate_errors_are_one_line(trained, files, tmp_path):
    model, sim = trained["model"], files["sim"]
    out = tmp_path / "o.root"
    cases = [
        (("apply", model, tmp_path / "nope.root", out), "apply", "no such file"),
        (("apply", model, f"{sim}:Tree", out), "apply", "tree 'Tree' not found"),
        (("apply", model, sim, out, "--tree", "Evnts"), "apply", "Did you mean 'Events'?"),
        (
            ("apply", model, sim, out, "--branch", "mj1=mj11"),
            "apply",
            "branch 'mj11' not found. Did you mean 'mj1'",
        ),
        (
            ("apply", model, sim, out, "--branch", "mjx=mj1"),
            "apply",
            "model feature 'mjx' not found. Did you mean 'mj1'?",
        ),
        (("apply", model, sim, out, "--branch", "mj1"), "apply", "expected FEATURE=BRANCH"),
        (("apply", model, sim, out, "--step-size", "0"), "apply", "expected an integer >= 1"),
        (
            ("apply", model, sim, out, "--compression", "zlib", "--compression-level", "12"),
            "apply",
            "--compression-level 12: zlib levels are 0 to 9",
        ),
        (("apply", model, sim, out, "--compression", "gzip"), "apply", "invalid choice: 'gzip'"),
        (("demo", "--toy", "--events", "0"), "demo", "expected an integer >= 1"),
        (("train", "c.toml", "--epochs", "x"), "train", "expected an integer >= 1"),
        (("apply", model, sim), "apply", "required: OUTPUT"),
        (("apply", tmp_path / "no-model", sim, out), "apply", "no model at"),
        (("apply", model, trained["model"] / "config.json", out), "apply", "not a ROOT file"),
        (("apply", model, sim, out, "--suffix", ""), "apply", "already exists"),
        (("apply", model, sim, out, "--condition-branch", "mjj"), "apply", "not conditional"),
        (
            ("apply", model, sim, out, "--branch", "mj1=Jet_mass"),
            "apply",
            "features mix per-object (jagged) branches ['Jet_mass'] with per-event branches "
            "['delta_mj']",
        ),
        (
            ("evaluate", model, "--source", sim, "--target", f"{files['data']}:Evnts"),
            "evaluate",
            "tree 'Evnts' not found. Did you mean 'Events'?",
        ),
        (("evaluate", model, "--source", sim), "evaluate", "required: --target"),
    ]
    for args, command, expect in cases:
        line = _one_line_error(*_run(*args)[::2], command)
        assert expect in line, (args, line)
    assert not out.exists()
    line = _one_line_error(*_run()[::2], "")
    assert line.startswith("coffea-f4f: error:")


def test_debug_raises_the_error_with_its_traceback(files):
    """``coffea-f4f --debug COMMAND``: the exception itself instead of the one-line error."""
    missing = files["dir"] / "nope.toml"
    with pytest.raises(CLIError, match="no such config file"):
        main(["--debug", "train", str(missing)])
    _one_line_error(*_run("train", missing)[::2], "train")
    assert "--debug" in _run("--help")[1]


# ------------------------------------------------------------------------------------ demo
def _spy_on_training(monkeypatch) -> list[int]:
    """Record the number of source events each ``fit_morpher`` call gets."""
    from coffea_f4f import train

    seen: list[int] = []
    fit = train.fit_morpher

    def spy(source, target, **kwargs):
        seen.append(len(source))
        return fit(source, target, **kwargs)

    monkeypatch.setattr(train, "fit_morpher", spy)
    return seen


def test_toy_demo_runs_with_a_tiny_preset(tmp_path, monkeypatch):
    """``coffea-f4f demo --toy --quick`` with the toy preset shrunk (seconds, not minutes);
    ``--events`` and ``--epochs`` beat the preset."""
    monkeypatch.setitem(
        demo.TOY_DEMO_PRESETS, "quick", {"n": 900, "epochs": 4, "layers": 2, "hidden": 16}
    )
    seen = _spy_on_training(monkeypatch)
    code, out, err = _run(
        "demo", "--toy", "--quick", "--out", tmp_path, "--no-progress", "--events", "500",
        "--epochs", "2",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "model" / "config.json").is_file()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved) >= {"auc_after", "transport_ratio"}
    assert "AUC morphed vs target" in out
    assert "AUC source vs target" in out
    assert "500 events each, 2 epochs" in out
    assert seen == [500]
    assert (saved["n_train_per_sample"], saved["epochs"]) == (500, 2)
    assert _history_epochs(tmp_path / "model") == {
        "morph": 2,
        "source_density": 2,
        "target_density": 2,
    }


def test_dijet_demo_command_runs_with_a_tiny_preset(tmp_path, monkeypatch):
    """``coffea-f4f demo --quick`` (the dijet chain through coffea), shrunk to seconds."""
    pytest.importorskip("coffea")
    monkeypatch.setitem(
        demo.PRESETS,
        "quick",
        {"n_train": 800, "n_test": 500, "epochs": 1, "layers": 1, "hidden": 8, "chunksize": 400},
    )
    seen = _spy_on_training(monkeypatch)
    code, out, err = _run(
        "demo", "--quick", "--out", tmp_path, "--no-progress", "--events", "600", "--epochs", "2"
    )
    assert code == 0, err
    assert "C2ST AUC morphed sim vs data" in out
    assert seen == [600]
    assert _history_epochs(tmp_path / "model")["morph"] == 2
    assert (tmp_path / "sim.root").is_file()
    assert (tmp_path / "features.png").is_file()


def test_plan_copy_keeps_types_and_names_counters_it_cannot_keep():
    """A NanoAOD-like tree with a uint32 counter (uproot itself writes only int32 ones, so
    the tree is built from uproot's interpretation objects): every branch keeps its type,
    the counter is reported as written as int32."""
    from types import SimpleNamespace

    from coffea_f4f.cli.apply import plan_copy

    def branch(name, interpretation, count=None):
        return SimpleNamespace(
            name=name, interpretation=interpretation, branches=[], count_branch=count
        )

    n = branch("nFatJet", uproot.AsDtype(">u4"))
    tree = SimpleNamespace(
        branches=[
            branch("run", uproot.AsDtype(">u4")),
            branch("event", uproot.AsDtype(">u8")),
            n,
            branch("FatJet_mass", uproot.AsJagged(uproot.AsDtype(">f4")), count=n),
            branch("FatJet_jetId", uproot.AsJagged(uproot.AsDtype(">u1")), count=n),
        ]
    )
    plan = plan_copy(tree)
    assert plan.copied == ["run", "event", "FatJet_mass", "FatJet_jetId"]
    assert plan.types["run"] == np.uint32
    assert plan.types["event"] == np.uint64
    assert str(plan.types["FatJet_mass"]) == "var * float32"
    assert str(plan.types["FatJet_jetId"]) == "var * uint8"
    assert plan.counters == {"FatJet_mass": "nFatJet", "FatJet_jetId": "nFatJet"}
    assert plan.retyped == ["nFatJet (uint32)"]


def test_train_config_takes_conditions_weights_and_scalings(files, tmp_path):
    from coffea_f4f import load

    rng = np.random.default_rng(9)
    sim = _events("sim", 3)
    sim["era"] = rng.integers(0, 3, N_EVENTS).astype(np.int32)
    sim["w"] = np.where(rng.uniform(size=N_EVENTS) < 0.05, -1.0, 1.0) * rng.uniform(
        0.5, 1.5, N_EVENTS
    )
    data = _events("data", 4)
    data["era"] = rng.integers(0, 3, N_EVENTS).astype(np.int32)
    _write_root(tmp_path / "sim.root", sim)
    _write_root(tmp_path / "data.root", data)  # no weight branch: data are unweighted
    cfg = tmp_path / "prod.toml"
    cfg.write_text(
        'source = "sim.root"\ntarget = "data.root"\n'
        f"features = {json.dumps(FEATURES)}\n"
        'condition = ["mjj", "era"]\n'
        'condition_scaling = { mjj = "log", era = "categorical" }\n'
        'source_weights = "w"\nvariant = "switch"\noutput = "model"\nmax_events = 1500\n'
        + TINY_TOML
    )
    code, _, err = _run("train", cfg, "--no-progress")
    assert code == 0, err
    m = load(tmp_path / "model")
    assert m.variant == "switch"
    assert m.conditions == ["mjj", "era"]
    assert m.condition_scaler.kinds == ["log", "categorical"]
    assert m.history["density"]["effective_sample_size"] < 3000  # the weights were used
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'source = "sim.root"\ntarget = "data.root"\nfeatures = ["mj1"]\ncondition = [1, 2]\n'
    )
    code, _, err = _run("train", bad)
    assert "condition must be a branch name or a list of them" in _one_line_error(
        code, err, "train"
    )


def test_train_config_takes_an_ensemble(files, tmp_path):
    from coffea_f4f import load

    _write_root(tmp_path / "sim.root", _events("sim", 5))
    _write_root(tmp_path / "data.root", _events("data", 6))
    cfg = tmp_path / "ens.toml"
    head = f'source = "sim.root"\ntarget = "data.root"\nfeatures = {json.dumps(FEATURES)}\n'
    cfg.write_text(
        head + 'output = "model"\nmax_events = 600\nensemble = 2\nensemble_jobs = 1\n' + TINY_TOML
    )
    code, out, err = _run("train", cfg, "--no-progress")
    assert code == 0, err
    assert "ensemble members" in out
    assert load(tmp_path / "model").ensemble_size == 2
    for value in ('"2"', "true", "-1", "1.5"):
        bad = tmp_path / "bad.toml"
        bad.write_text(head + f'output = "m2"\nensemble = {value}\n' + TINY_TOML)
        code, _, err = _run("train", bad)
        assert "ensemble must be an integer >= 0" in _one_line_error(code, err, "train")
        assert not (tmp_path / "m2").exists()
