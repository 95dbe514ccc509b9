"""The README's quickstart runs as written (with smaller numbers)."""

import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> str:
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    code = quickstart()
    small = (
        code.replace("50_000", "1500")
        .replace("10_000", "500")
        .replace("epochs=20", "epochs=1, progress=False, num_threads=1")
        .replace("layers=4, hidden=64", "layers=2, hidden=16")
    )
    assert small != code  # the substitutions still match the README
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(small, "README.md", "exec"), namespace)
    assert 0.0 <= namespace["auc"] <= 1.0
    assert namespace["sigma"] > 0
    assert (tmp_path / "sim_to_data" / "config.json").is_file()
    assert set(namespace["morphed"].fields) == set(namespace["sim"].fields)


def test_readme_commands_match_ci():
    ci = (README.parent / ".ci" / "run").read_text()
    text = README.read_text()
    test_cmd = re.findall(r"```bash\n(.*?)\n```", text, re.S)[1].strip()
    assert test_cmd in ci
    # lint, format check and types before the tests, the same in CI and for a developer
    steps = test_cmd.split(" && ")
    assert steps[-4:] == ["ruff check .", "ruff format --check .", "mypy", "python -m pytest"]


def _section(title: str) -> str:
    text = README.read_text()
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def test_readme_train_config_is_valid(tmp_path):
    import tomllib

    from coffea_f4f.cli.train import build_job

    (toml,) = _blocks(_section("Train on NanoEvents, or from files"), "toml")
    job = build_job(tomllib.loads(toml), path=tmp_path / "config.toml")
    assert job.features == ["FatJet_mass", "FatJet_pt"]
    assert job.condition == "fixedGridRhoFastjetAll"
    assert job.options["train"].epochs == 20


def test_readme_nanoevents_training_and_dask_workflow_run(tmp_path, monkeypatch):
    pytest.importorskip("coffea")
    from nanoaod_fixture import write_nanoaod

    import coffea_f4f as f4f

    write_nanoaod(tmp_path / "sim.root", 300, seed=1, jets=False)
    write_nanoaod(tmp_path / "data.root", 300, seed=2, mass_shift=8.0, jets=False)
    monkeypatch.chdir(tmp_path)
    (train,) = _blocks(_section("Train on NanoEvents, or from files"), "python")
    small = train.replace("epochs=10", "epochs=1, progress=False, num_threads=1")
    assert small != train  # the substitution still matches the README
    namespace: dict = {"f4f": f4f, "TrainConfig": f4f.TrainConfig}
    exec(compile(small, "README.md", "exec"), namespace)
    assert namespace["morpher"].features == ["FatJet.mass", "FatJet.pt"]
    assert (tmp_path / "fatjet_model" / "config.json").is_file()

    _, dask_block = _blocks(_section("In a coffea processor"), "python")
    namespace = {"MorphTransform": f4f.MorphTransform}
    exec(compile(dask_block, "README.md", "exec"), namespace)
    h = namespace["out"]["sim"]["mass_morphed"]
    assert h.sum().value > 0  # morphed jet masses were filled


def test_readme_uncertainty_section_runs(tmp_path, monkeypatch):
    pytest.importorskip("coffea")
    from nanoaod_fixture import write_nanoaod

    import coffea_f4f as f4f

    write_nanoaod(tmp_path / "sim.root", 300, seed=1, jets=False)
    write_nanoaod(tmp_path / "data.root", 300, seed=2, mass_shift=8.0, jets=False)
    monkeypatch.chdir(tmp_path)
    (train,) = _blocks(_section("Train on NanoEvents, or from files"), "python")
    (block,) = _blocks(_section("The uncertainty of the morph, as coffea systematics"), "python")
    small = block.replace("epochs=10", "epochs=1, progress=False, num_threads=1").replace(
        "ensemble=5", "ensemble=2, ensemble_jobs=1"
    )
    assert small.count("ensemble=2, ensemble_jobs=1") == 1
    assert "epochs=1" in small
    namespace: dict = {"f4f": f4f, "TrainConfig": f4f.TrainConfig}
    setup = train.replace("epochs=10", "epochs=1, progress=False, num_threads=1")
    exec(compile(setup.split("morpher = ")[0], "README.md", "exec"), namespace)
    exec(compile(small, "README.md", "exec"), namespace)
    m = namespace["morpher"]
    assert m.ensemble_size == 2
    band, events, corrected = namespace["band"], namespace["events"], namespace["corrected"]
    assert set(band) == {"up", "down"}
    up_mass = ak.flatten(band["up"].FatJet.mass)
    assert ak.all(up_mass != ak.flatten(namespace["sim"].FatJet.mass))
    up = ak.flatten(events.FatJet.systematics.f4f.up.mass_morphed)
    np.testing.assert_array_equal(
        ak.to_numpy(up), ak.to_numpy(ak.flatten(events.FatJet.mass_morphed_up))
    )
    np.testing.assert_array_equal(
        ak.to_numpy(ak.flatten(corrected.FatJet.mass)),
        ak.to_numpy(ak.flatten(events.FatJet.mass_morphed)),
    )
