"""The package imports light and exposes the contract names."""

import subprocess
import sys

import pytest


def test_import_does_not_pull_torch_or_dask():
    code = (
        "import sys, coffea_f4f; "
        "print(sorted(m for m in ('torch', 'dask', 'coffea', 'normflows', 'sklearn') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_contract_names_resolve():
    import coffea_f4f as f4f

    for name in (
        "FlowConfig",
        "TrainConfig",
        "fit_density",
        "fit_morpher",
        "fit_condition_morpher",
        "Morpher",
        "load",
        "MissingColumnError",
        "ModelFileError",
        "ConditionClampWarning",
    ):
        assert getattr(f4f, name) is not None, name
    assert issubclass(f4f.ModelFileError, ValueError)
    assert issubclass(f4f.ConditionClampWarning, UserWarning)
    assert issubclass(f4f.MissingColumnError, KeyError)
    assert f4f.__version__
    assert callable(f4f.datasets.toy)


def test_unknown_attribute_raises():
    import coffea_f4f as f4f

    with pytest.raises(AttributeError, match="does_not_exist"):
        f4f.does_not_exist  # noqa: B018


def test_public_surface_is_all_and_every_name_resolves():
    code = (
        "import coffea_f4f as f4f, types; "
        "assert dir(f4f) == sorted(f4f.__all__), dir(f4f); "
        "bad = [n for n in f4f.__all__ if getattr(f4f, n) is None]; "
        "assert not bad, bad; "
        "mods = sorted(n for n in f4f.__all__ if isinstance(getattr(f4f, n), types.ModuleType)); "
        "print(mods)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['config', 'datasets', 'demo', 'metrics', 'plots']"


def test_every_submodule_is_reachable_as_an_attribute():
    import coffea_f4f as f4f

    for name in (
        "columns",
        "scaling",
        "flows",
        "maps",
        "density",
        "fileformat",
        "morpher",
        "train",
        "modelcache",
        "transform",
        "cli",
        "demo",
    ):
        module = getattr(f4f, name)
        assert module.__name__ == f"coffea_f4f.{name}"
        assert set(module.__all__) <= set(dir(module)), name
