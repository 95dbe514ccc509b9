"""The ``coffea-f4f`` argument parser and entry point: commands, argument types, exit codes.

Every error is one line on stderr: errors in arguments or inputs with exit code 2, any other
exception with its type named and exit code 1, Ctrl-C with exit code 130; ``--debug``
re-raises them with their traceback instead. Warnings are one line too.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .. import demo
from .._version import __version__
from .apply import COMPRESSIONS, DEFAULT_COMPRESSION, run_apply
from .errors import CLIError, error_report, one_line
from .evaluate import run_evaluate
from .inputs import DEFAULT_TREE
from .train import CONFIG_EXAMPLE, CONFIG_KEYS, build_job, load_config, run_train

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``PROG: error: MESSAGE``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _pair(text: str) -> tuple[str, str]:
    feature, sep, branch = text.partition("=")
    if not sep or not feature.strip() or not branch.strip():
        raise argparse.ArgumentTypeError(f"expected FEATURE=BRANCH, got {text!r}")
    return feature.strip(), branch.strip()


# ---------------------------------------------------------------- the commands
def _cmd_demo(args: argparse.Namespace) -> int:
    sizes = {k: v for k, v in (("events", args.events), ("epochs", args.epochs)) if v is not None}
    if args.toy:
        demo.run_toy_demo(
            Path(args.out),
            quick=args.quick,
            source=args.source,
            target=args.target,
            seed=args.seed,
            progress=not args.no_progress,
            preset={"n" if k == "events" else k: v for k, v in sizes.items()},
        )
        return 0
    try:
        import coffea.processor  # noqa: F401 - optional dependency, checked before the run
    except ImportError as err:
        raise CLIError(
            f"the dijet demo needs coffea ({err}); pip install 'coffea-f4f[all]', "
            "or run the toy demo with --toy"
        ) from err
    demo.run(
        Path(args.out),
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        preset={"n_train" if k == "events" else k: v for k, v in sizes.items()},
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    path = Path(args.config)
    job = build_job(load_config(path), path=path)
    if args.output is not None:
        job.output = Path(args.output)
    if args.max_events is not None:
        job.max_events = args.max_events
    run_train(
        job, progress=False if args.no_progress else None, device=args.device, epochs=args.epochs
    )
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    run_apply(args)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    run_evaluate(args)
    return 0


# ---------------------------------------------------------------- the parser
def _add_model_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--branch",
        action="append",
        type=_pair,
        metavar="FEATURE=BRANCH",
        help="read model feature FEATURE from branch BRANCH (repeatable; default: "
        "the branch named like the feature)",
    )
    p.add_argument(
        "--condition-branch",
        metavar="BRANCH",
        help="branch holding the condition of a conditional model (default: the "
        "model's condition name)",
    )
    p.add_argument(
        "--target-condition",
        metavar="VALUE|BRANCH",
        help="for models that morph between condition values: the value (or branch) to morph to",
    )


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole chain on built-in data and print the metrics",
        description="Generate LHCO-like dijet sim and data samples, train the conditional "
        "morph sim -> data at each mjj, write held-out events as NanoAOD ROOT "
        "files, morph them inside a coffea processor, print the metrics and write "
        "plots, metrics.json and the model. --toy: the same on 2D toy shapes.",
    )
    p.add_argument("--out", default="f4f-demo", help="output directory (default: f4f-demo)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smaller preset: dijets in a few minutes on 2 CPU cores instead of ~15, the toy "
        "in ~30 s instead of ~1 minute",
    )
    p.add_argument(
        "--toy",
        action="store_true",
        help="morph two 2D toy shapes instead of dijets (no coffea needed)",
    )
    p.add_argument(
        "--events",
        type=_positive,
        metavar="N",
        help="training events per sample (overrides the preset)",
    )
    p.add_argument(
        "--epochs",
        type=_positive,
        metavar="N",
        help="training epochs of every flow (overrides the preset)",
    )
    p.add_argument("--source", default="checkerboard", help="source toy shape (--toy)")
    p.add_argument("--target", default="star", help="target toy shape (--toy)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_demo)


def _add_train(sub: argparse._SubParsersAction) -> None:
    keys = "\n".join(f"  {k:<15} {v}" for k, v in CONFIG_KEYS.items())
    p = sub.add_parser(
        "train",
        help="train a morph from ROOT or parquet files described by a config file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a morph source -> target (both densities, then the morph flow) on "
        "branches read with uproot\n(only the features and the condition are "
        "read) and save the model directory (Morpher.save).\nThe config is TOML "
        "(.toml) or YAML (.yaml/.yml, needs PyYAML).",
        epilog=f"config keys:\n{keys}\n\n{CONFIG_EXAMPLE}",
    )
    p.add_argument("config", metavar="CONFIG", help="the config file (.toml, .yaml)")
    p.add_argument(
        "--output",
        metavar="DIR",
        help="model directory, relative to the working directory (overrides 'output')",
    )
    p.add_argument(
        "--max-events",
        "--events",
        type=_positive,
        metavar="N",
        help="read at most N events per dataset (overrides 'max_events')",
    )
    p.add_argument(
        "--epochs",
        type=_positive,
        metavar="N",
        help="training epochs (overrides [train] epochs, and [density_train] epochs if set)",
    )
    p.add_argument("--device", help="training device, e.g. cpu or cuda (overrides [train])")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_train)


def _add_apply(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "apply",
        help="write a copy of a ROOT tree with morphed branches added",
        description="Morph the feature branches of INPUT's tree chunk by chunk and write OUTPUT "
        "(a new ROOT file, TTree of the same name) with every flat and jagged "
        "numeric branch of the input copied with its type and one branch "
        "<branch><suffix> per feature added, of the input branch's type (float32 "
        "stays float32, float64 stays float64; integer inputs get --precision). "
        "Jagged (per-object) features are supported: they are morphed per object "
        "and the new branch shares the collection's counter (nFatJet -> "
        "FatJet_mass_morphed), so NanoAODSchema reads it as FatJet.mass_morphed. "
        "Counters keep their values but are written as int32 (uproot writes no "
        "other counter type). Branches of other types (strings, fixed-size arrays, "
        "nested vectors, objects) and other objects of the file are not copied.",
    )
    p.add_argument("model", metavar="MODEL", help="saved model directory")
    p.add_argument("input", metavar="INPUT", help="input ROOT file (FILE or FILE:TREE)")
    p.add_argument("output", metavar="OUTPUT", help="output ROOT file (overwritten)")
    p.add_argument(
        "--tree",
        default=DEFAULT_TREE,
        help=f"tree name when INPUT names none (default {DEFAULT_TREE})",
    )
    p.add_argument(
        "--step-size",
        type=_positive,
        default=100_000,
        metavar="N",
        help="events per chunk (default 100000)",
    )
    p.add_argument(
        "--suffix", default="_morphed", help="suffix of the morphed branches (default _morphed)"
    )
    p.add_argument(
        "--compression",
        choices=list(COMPRESSIONS),
        default=DEFAULT_COMPRESSION,
        help=f"compression of OUTPUT (default {DEFAULT_COMPRESSION})",
    )
    p.add_argument(
        "--compression-level",
        type=_level,
        metavar="N",
        help="compression level (default: "
        + ", ".join(f"{k} {v[1]}" for k, v in COMPRESSIONS.items() if v[0])
        + "; 0 = uncompressed)",
    )
    _add_model_inputs(p)
    p.add_argument(
        "--precision",
        choices=["float64", "float32"],
        default="float64",
        help="precision the model applies in (default float64; float32 is about twice as fast)",
    )
    p.add_argument("--device", help="device for morphing (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_apply)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="print how good a morph is and write metrics.json and plots",
        description="Morph the source events and compare with the target: classifier AUC "
        "before/after (with its null sigma), per-feature W1/std, distance moved "
        "and transport ratio (in target-std units). Writes metrics.json, "
        "feature_comparison.png and loss_curves.png to --out. Use events the "
        "model was not trained on.",
    )
    p.add_argument("model", metavar="MODEL", help="saved model directory")
    p.add_argument(
        "--source",
        required=True,
        action="append",
        metavar="FILE:TREE",
        help="source input (FILE.root[:TREE] or FILE.parquet; repeatable)",
    )
    p.add_argument(
        "--target",
        required=True,
        action="append",
        metavar="FILE:TREE",
        help="target input (same forms; repeatable)",
    )
    p.add_argument(
        "--out",
        default="f4f-evaluate",
        metavar="DIR",
        help="output directory (default f4f-evaluate)",
    )
    p.add_argument(
        "--max-events",
        type=_positive,
        default=100_000,
        metavar="N",
        help="use the first N events of each dataset (default 100000)",
    )
    _add_model_inputs(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the metrics (default 0)")
    p.add_argument("--no-plots", action="store_true", help="write metrics.json only")
    p.set_defaults(func=_cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The ``coffea-f4f`` parser with its commands demo, train, apply and evaluate."""
    parser = _Parser(
        prog="coffea-f4f",
        description="Morph one dataset into another with normalizing flows (flows for flows).",
    )
    parser.add_argument("--version", action="version", version=f"coffea-f4f {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show the traceback instead of a one-line message",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_demo, _add_train, _add_apply, _add_evaluate):
        add(sub)
    return parser


def _one_line_warnings(command: str) -> Any:
    """``warnings.showwarning`` that prints a warning as one line,
    ``coffea-f4f COMMAND: warning: MESSAGE``."""

    def show(message: Any, category: Any, filename: Any, lineno: Any, *_: Any, **__: Any) -> None:
        print(f"coffea-f4f {command}: warning: {one_line(message)}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coffea-f4f`` console script.

    Every error is one line on stderr, ``coffea-f4f COMMAND: error: ...``, never a traceback
    (``--debug`` raises the error with its traceback instead); warnings are one line too,
    ``coffea-f4f COMMAND: warning: ...``.

    Returns:
        The exit status: 0 on success; 2 on bad arguments or inputs (:class:`CLIError` and the
        :data:`~coffea_f4f.cli.errors.USER_ERRORS` the package raises for bad inputs); 1 on
        any other exception (unexpected: its type is named); 130 when interrupted (Ctrl-C).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, argument errors
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    where = f"coffea-f4f {args.command}"
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _one_line_warnings(args.command)
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every error: one line (errors.error_report), or --debug
        if args.debug:
            raise
        status, message = error_report(err, args.command)
        print(f"{where}: error: {message}", file=sys.stderr)
        return status
