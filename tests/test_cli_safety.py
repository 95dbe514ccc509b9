"""The command line never shows a traceback and never touches its input: an OUTPUT that is the
input by any link is refused, outputs are written under a temporary name and renamed at the
end (a failure leaves no partial file and an existing output as it was), and damaged or
truncated inputs, directories given as files, bad ``--device`` values, unexpected exceptions
and Ctrl-C each give one line on stderr and a non-zero exit. Warnings are one line too."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest

from coffea_f4f.cli import main

ak = pytest.importorskip("awkward")
uproot = pytest.importorskip("uproot")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

N_CHUNK = 400
N_CHUNKS = 4


def _run(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def _one_line(code: int, err: str, command: str, *, status: int = 2) -> str:
    """The one stderr line of a failed command (exit ``status``, no traceback)."""
    assert code == status, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"coffea-f4f {command}: error: "), lines[0]
    return lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_root(path: Path, seed: int = 0) -> Path:
    """A TTree ``Events`` (x, y, c) of ``N_CHUNKS`` baskets of ``N_CHUNK`` events; ``c`` lies
    partly outside the model's training range [0, 1]."""
    rng = np.random.default_rng(seed)
    with uproot.recreate(path, compression=uproot.ZLIB(1)) as f:
        f.mktree("Events", {"x": np.float64, "y": np.float64, "c": np.float64})
        for _ in range(N_CHUNKS):
            f["Events"].extend(
                {
                    "x": rng.normal(size=N_CHUNK),
                    "y": rng.normal(size=N_CHUNK),
                    "c": rng.uniform(-0.2, 1.2, N_CHUNK),
                }
            )
    return path


def _basket(path: Path, branch: str, index: int) -> tuple[int, int]:
    """``(seek, bytes)`` of basket ``index`` of ``branch`` (key header included)."""
    with uproot.open(path) as f:
        b = f["Events"][branch]
        return int(b.member("fBasketSeek")[index]), int(b.member("fBasketBytes")[index])


def _damage(path: Path, out: Path, *, branch: str = "x", index: int = -1, n: int = 32) -> Path:
    """A copy of ``path`` with ``n`` bytes in the middle of a basket's compressed data
    inverted (so they surely change)."""
    seek, size = _basket(path, branch, index % N_CHUNKS)
    data = bytearray(path.read_bytes())
    mid = seek + size // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def model(tiny_conditional_morpher, tmp_path_factory) -> Path:
    """The conditional model (features x, y; condition c in [0, 1]) saved."""
    return tiny_conditional_morpher.save(tmp_path_factory.mktemp("safety-model") / "model")


@pytest.fixture(scope="module")
def root_file(tmp_path_factory) -> Path:
    return _write_root(tmp_path_factory.mktemp("safety-files") / "in.root")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".part" in p.name)


# ---------------------------------------------------------------- never over the input
@pytest.mark.parametrize("link", ["hard", "symbolic", "spelling"])
def test_output_that_is_the_input_by_any_link_is_refused(model, root_file, tmp_path, link):
    """Before: an OUTPUT hard-linked to the input truncated the input to 0 entries (and the
    error was uproot's "expected Chunk of length ...")."""
    src = tmp_path / "in.root"
    src.write_bytes(root_file.read_bytes())
    before = _digest(src)
    if link == "hard":
        out = tmp_path / "out.root"
        os.link(src, out)
    elif link == "symbolic":
        out = tmp_path / "out.root"
        out.symlink_to(src)
    else:
        (tmp_path / "sub").mkdir()
        out = tmp_path / "sub" / ".." / "in.root"
    line = _one_line(*_run("apply", model, src, out, "--no-progress")[::2], "apply")
    assert "is the input file" in line
    assert {"hard": "(a hard link to it)", "symbolic": "(a symbolic link to it)"}.get(
        link, ""
    ) in line
    assert _digest(src) == before
    assert _leftovers(tmp_path) == []
    with uproot.open(src) as f:
        assert f["Events"].num_entries == N_CHUNK * N_CHUNKS


def test_a_failure_keeps_an_existing_output_and_leaves_no_partial_file(model, root_file, tmp_path):
    """A basket of the last chunk is damaged: three chunks are written, then reading fails.
    Before: zlib's ``error`` with a traceback, and the existing OUTPUT deleted."""
    bad = _damage(root_file, tmp_path / "bad.root", index=-1)
    out = tmp_path / "out.root"
    out.write_bytes(b"an earlier result")
    args = ("apply", model, bad, out, "--no-progress", "--step-size", N_CHUNK)
    line = _one_line(*_run(*args)[::2], "apply")
    assert f"cannot read the data of {bad}:Events: the file is damaged or truncated" in line
    assert out.read_bytes() == b"an earlier result"
    assert _leftovers(tmp_path) == []
    fresh = tmp_path / "fresh.root"
    _one_line(*_run("apply", model, bad, fresh, "--no-progress")[::2], "apply")
    assert not fresh.exists()


def test_success_replaces_the_output_and_a_link_there_is_replaced_not_written_through(
    model, root_file, tmp_path
):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not a ROOT file")
    out = tmp_path / "out.root"
    out.symlink_to(elsewhere)
    code, _, err = _run("apply", model, root_file, out, "--no-progress")
    assert code == 0, err
    assert not out.is_symlink()
    assert elsewhere.read_text() == "not a ROOT file"
    with uproot.open(out) as f:
        assert f["Events"].num_entries == N_CHUNK * N_CHUNKS
    assert _leftovers(tmp_path) == []
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _fail_half_way(out: Path) -> None:
    from coffea_f4f.cli.outputs import replacing

    with replacing(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("half-way")


def test_replacing_keeps_the_suffix_and_cleans_up_on_error(tmp_path):
    from coffea_f4f.cli.outputs import replacing

    out = tmp_path / "sub" / "plot.png"
    with replacing(out) as tmp:
        assert tmp.parent == out.parent
        assert tmp.name.startswith(".plot.")
        assert tmp.suffix == ".png"  # savefig infers the format from it
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new"
    with pytest.raises(RuntimeError, match="half-way"):
        _fail_half_way(out)
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in out.parent.iterdir()) == ["plot.png"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_ctrl_c_is_one_line_exit_130_and_leaves_no_partial_file(
    model, root_file, tmp_path, monkeypatch
):
    from coffea_f4f.cli import apply

    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return morph(*args, **kwargs)

    morph = apply.morph_columns
    monkeypatch.setattr(apply, "morph_columns", interrupted)
    out = tmp_path / "out.root"
    out.write_bytes(b"kept")
    code, _, err = _run("apply", model, root_file, out, "--no-progress", "--step-size", N_CHUNK)
    assert code == 130
    assert err.strip().splitlines() == ["coffea-f4f apply: interrupted"]
    assert out.read_bytes() == b"kept"
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- damaged and odd inputs
def test_damaged_truncated_and_directory_inputs_are_one_line_errors(model, root_file, tmp_path):
    """Before: a damaged compressed basket was a ``zlib.error`` traceback (apply and evaluate);
    a directory as OUTPUT "[Errno 21] Is a directory"."""
    bad = _damage(root_file, tmp_path / "bad.root", index=0)
    data = root_file.read_bytes()
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.root"
    damaged = "the file is damaged or truncated"
    cases = [
        (("apply", model, bad, out), "apply", damaged),
        (("apply", model, truncated, out), "apply", damaged),
        (("apply", model, tmp_path, out), "apply", "is not a file"),
        (("apply", model, root_file, tmp_path), "apply", "is a directory"),
        (("apply", root_file, root_file, out), "apply", "model"),
        (
            ("evaluate", model, "--source", bad, "--target", root_file, "--out", tmp_path / "e"),
            "evaluate",
            damaged,
        ),
        (
            ("evaluate", model, "--source", tmp_path, "--target", root_file),
            "evaluate",
            "is not a file",
        ),
    ]
    for args, command, expect in cases:
        quiet = "--no-progress" if command == "apply" else "--no-plots"
        line = _one_line(*_run(*args, quiet)[::2], command)
        assert expect in line, (args, line)
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def _config(tmp_path: Path, source: Path, **extra: str) -> Path:
    cfg = tmp_path / "train.toml"
    lines = [
        f'source = "{source}:Events"',
        f'target = "{source}:Events"',
        'features = ["x", "y"]',
        'condition = "c"',
        f'output = "{tmp_path / "model"}"',
        *(f"{k} = {v}" for k, v in extra.items()),
        "[train]",
        "epochs = 1",
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_train_on_a_damaged_input_or_into_a_file_is_one_line(root_file, tmp_path):
    bad = _damage(root_file, tmp_path / "bad.root", index=1)
    line = _one_line(*_run("train", _config(tmp_path, bad), "--no-progress")[::2], "train")
    assert "the file is damaged or truncated" in line
    cfg = _config(tmp_path, root_file)
    line = _one_line(*_run("train", cfg, "--output", root_file)[::2], "train")
    assert "is a file, not a directory" in line


# ---------------------------------------------------------------- devices
def test_bad_devices_are_one_line_errors_before_any_work(model, root_file, tmp_path):
    """Before: ``--device gpu7`` was torch's ``RuntimeError: Invalid device string`` with a
    traceback, after the model was loaded."""
    import torch

    out = tmp_path / "o.root"
    cases = [("gpu7", "is not a device"), ("meta", "does not run on meta")]
    if not torch.cuda.is_available():
        cases += [("cuda", "CUDA is not available here"), ("cuda:1", "CUDA is not available")]
    else:  # pragma: no cover - a machine with CUDA
        cases += [("cuda:99", "CUDA device")]
    for device, expect in cases:
        args = ("apply", model, root_file, out, "--device", device, "--no-progress")
        assert expect in _one_line(*_run(*args)[::2], "apply"), device
        cfg = _config(tmp_path, root_file)
        line = _one_line(*_run("train", cfg, "--device", device, "--no-progress")[::2], "train")
        assert f"--device {device!r}" in line, line
        assert expect in line, line
    assert not out.exists()
    assert not (tmp_path / "model").exists()
    cfg = _config(tmp_path, root_file)
    cfg.write_text(cfg.read_text() + 'device = "cuda:x"\n')
    line = _one_line(*_run("train", cfg, "--no-progress")[::2], "train")
    assert "[train] device 'cuda:x' is not a device" in line


# ---------------------------------------------------------------- the catch-all
@pytest.mark.parametrize(
    ("error", "expect"),
    [
        (RuntimeError("boom\n  on two lines"), "RuntimeError: boom on two lines (unexpected;"),
        (AssertionError(), "AssertionError: AssertionError (unexpected;"),
        (MemoryError("out of memory"), "MemoryError: out of memory"),
    ],
)
def test_unexpected_exceptions_are_one_line_naming_the_type(
    model, root_file, tmp_path, monkeypatch, error, expect
):
    """Before: anything but CLIError, ValueError, KeyError, OSError, TypeError and
    ArithmeticError escaped ``main`` with its traceback."""
    from coffea_f4f.cli import parser

    def fail(args):
        raise error

    monkeypatch.setattr(parser, "run_apply", fail)
    args = ("apply", model, root_file, tmp_path / "o.root")
    line = _one_line(*_run(*args)[::2], "apply", status=1)
    assert expect in line
    assert "--debug" in line
    with pytest.raises(type(error)):
        main(["--debug", *map(str, args)])


def test_user_errors_keep_exit_code_2_and_their_message(monkeypatch, model, root_file, tmp_path):
    from coffea_f4f.cli import parser

    def fail(args):
        raise KeyError("'mjj' not found")

    monkeypatch.setattr(parser, "run_apply", fail)
    line = _one_line(*_run("apply", model, root_file, tmp_path / "o.root")[::2], "apply")
    assert line == "coffea-f4f apply: error: 'mjj' not found"


# ---------------------------------------------------------------- warnings
def test_clamped_conditions_are_one_warning_line_for_the_whole_file(model, root_file, tmp_path):
    """Before: silent. Now the chunks' clamps are added up into one line."""
    with uproot.open(root_file) as f:
        c = f["Events"]["c"].array(library="np")
    import coffea_f4f

    lo, hi = coffea_f4f.load(model).condition_range
    outside = int(((c < lo) | (c > hi)).sum())
    assert outside > 0
    out = tmp_path / "o.root"
    code, _, err = _run("apply", model, root_file, out, "--no-progress", "--step-size", 300)
    assert code == 0, err
    assert err.strip().splitlines() == [
        f"coffea-f4f apply: warning: condition 'c': {outside} of {len(c)} values outside the "
        f"training range [{lo:.6g}, {hi:.6g}] were clamped to it (condition_policy='clamp'; "
        "set 'error' to refuse)"
    ]


# ---------------------------------------------------------------- properties (hypothesis)
@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(
    where=st.floats(0.0, 1.0), length=st.integers(1, 64), basket=st.integers(0, N_CHUNKS - 1)
)
def test_any_damage_inside_a_basket_is_refused_in_one_line_or_read(
    model, root_file, tmp_path_factory, where, length, basket
):
    """Bytes of any basket of ``x`` inverted anywhere: apply either reads it (the damage
    hit nothing it decodes) or fails with one line; the input is never changed."""
    d = tmp_path_factory.mktemp("damage")
    seek, size = _basket(root_file, "x", basket)
    data = bytearray(root_file.read_bytes())
    start = seek + int(where * (size - 1))
    data[start : start + length] = bytes(b ^ 0xFF for b in data[start : start + length])
    bad = d / "bad.root"
    bad.write_bytes(bytes(data))
    before = _digest(bad)
    code, _, err = _run("apply", model, bad, d / "o.root", "--no-progress")
    assert "Traceback" not in err
    if code != 0:
        _one_line(code, err, "apply")
        assert not (d / "o.root").exists()
    assert _digest(bad) == before
    assert _leftovers(d) == []


_WORDS = st.sampled_from(
    [
        "--device",
        "--step-size",
        "--branch",
        "--suffix",
        "--tree",
        "--compression",
        "x=y",
        "0",
        "-1",
        "gpu7",
        "cuda",
        ":",
        "",
        "nope.root",
        "a.parquet",
        "x" * 300,
        "--debugx",
        "\n",
    ]
)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    command=st.sampled_from(["apply", "evaluate", "train"]), words=st.lists(_WORDS, max_size=5)
)
def test_any_command_line_ends_in_an_exit_code_and_at_most_one_error_line(
    model, tmp_path_factory, command, words
):
    """Arbitrary words after a command on missing inputs: an exit code, never a traceback,
    at most one error line (argparse's usage lines aside)."""
    d = tmp_path_factory.mktemp("argv")
    fixed = {
        "apply": [model, d / "missing.root", d / "o.root"],
        "evaluate": [model, "--source", d / "missing.root", "--target", d / "missing.root"],
        "train": [d / "missing.toml"],
    }[command]
    code, _, err = _run(command, *fixed, *words)
    assert code != 0
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err
    assert not (d / "o.root").exists()
