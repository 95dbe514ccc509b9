"""The package imports light and exposes the contract names."""

import subprocess
import sys


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

    for name in ("FlowConfig", "TrainConfig", "fit_density", "fit_morpher",
                 "fit_condition_morpher", "Morpher", "load", "MissingColumnError"):
        assert getattr(f4f, name) is not None, name
    assert issubclass(f4f.MissingColumnError, KeyError)
    assert f4f.__version__
    assert callable(f4f.datasets.toy)


def test_unknown_attribute_raises():
    import coffea_f4f as f4f

    try:
        f4f.does_not_exist  # noqa: B018
    except AttributeError as err:
        assert "does_not_exist" in str(err)
    else:  # pragma: no cover
        raise AssertionError("no AttributeError")
