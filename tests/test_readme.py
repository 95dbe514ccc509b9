"""The README's quickstart runs as written (with smaller numbers)."""

import re
from pathlib import Path

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
