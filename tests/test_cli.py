"""The ``coffea-f4f`` command: train (TOML) -> apply -> evaluate on small generated ROOT files,
``--help`` of every command, and one-line errors (exit code 2, no traceback)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coffea_f4f import config, datasets, demo
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
    assert "mj1 -> mj1_morphed" in stdout
    src = uproot.open(files["sim"])["Events"]
    got = uproot.open(out)["Events"]
    assert got.num_entries == N_EVENTS
    assert set(got.keys()) == set(src.keys()) | {"mj1_morphed", "delta_mj_morphed"}
    a, b = src.arrays(library="ak"), got.arrays(library="ak")
    copied = src.keys()  # every branch name (uproot: sub-branches too)
    for name in copied:  # copied unchanged (the counter is rewritten as int32)
        assert ak.all(a[name] == b[name]), name
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
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(got["Jet_mass_new"])), expected[:, 0], rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(got["Jet_pt_new"])), expected[:, 1], rtol=1e-12, atol=1e-12
    )


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
def test_toy_demo_runs_with_a_tiny_preset(tmp_path, monkeypatch):
    """``coffea-f4f demo --toy --quick`` with the toy preset shrunk (seconds, not minutes)."""
    monkeypatch.setitem(
        demo.TOY_DEMO_PRESETS, "quick", {"n": 600, "epochs": 1, "layers": 2, "hidden": 16}
    )
    code, out, err = _run("demo", "--toy", "--quick", "--out", tmp_path, "--no-progress")
    assert code == 0, err
    assert (tmp_path / "model" / "config.json").is_file()
    assert set(json.loads((tmp_path / "metrics.json").read_text())) >= {
        "auc_after",
        "transport_ratio",
    }
    assert "AUC morphed vs target" in out


def test_dijet_demo_command_runs_with_a_tiny_preset(tmp_path, monkeypatch):
    """``coffea-f4f demo --quick`` (the dijet chain through coffea), shrunk to seconds."""
    pytest.importorskip("coffea")
    monkeypatch.setitem(
        demo.PRESETS,
        "quick",
        {"n_train": 800, "n_test": 500, "epochs": 1, "layers": 1, "hidden": 8, "chunksize": 400},
    )
    code, out, err = _run("demo", "--quick", "--out", tmp_path, "--no-progress")
    assert code == 0, err
    assert "C2ST AUC morphed sim vs data" in out
    assert (tmp_path / "sim.root").is_file()
    assert (tmp_path / "features.png").is_file()
