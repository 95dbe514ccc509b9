"""A saved model on branches: loading it, naming its inputs, morphing columns read from files.

Used by ``apply`` and ``evaluate``. The column rules (jagged features morphed per object, an
event-level condition broadcast to the objects) are :mod:`coffea_f4f.columns`'s; this module
only maps the model's features and condition to branches.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..columns import MissingColumnError
from .errors import CLIError, one_line

if TYPE_CHECKING:  # pragma: no cover - for type checkers only (the morpher imports torch)
    from ..morpher import Morpher

__all__ = [
    "check_device",
    "check_one_kind",
    "condition_args",
    "feature_map",
    "input_branches",
    "load_model",
    "morph_columns",
]


_DEVICE_HINT = "use cpu, cuda, cuda:N, mps or auto"


def check_device(device: str | None, option: str = "--device") -> str | None:
    """``device`` checked before any work: a device torch can parse, of a kind coffea-f4f
    runs on (cpu, cuda, mps; ``auto``), and present on this machine (``cuda:N`` with N below
    the number of CUDA devices). ``None`` stays ``None``.

    Imports torch: call it from commands that train or morph.

    Raises:
        CLIError: naming the value and what would work.
    """
    if device is None:
        return None
    import torch  # the commands that call this train or morph anyway

    text = str(device).strip()
    if text == "auto":
        return text
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CLIError(
            f"{option} {device!r} is not a device ({one_line(err)}); {_DEVICE_HINT}"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(
                f"{option} {device!r}: CUDA is not available here; use --device cpu (or auto)"
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise CLIError(
                f"{option} {device!r}: this machine has {n} CUDA device{'s' if n != 1 else ''} "
                f"(cuda:0 to cuda:{n - 1})"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise CLIError(f"{option} {device!r}: MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise CLIError(
            f"{option} {device!r}: coffea-f4f does not run on {dev.type}; {_DEVICE_HINT}"
        )
    return text


def load_model(path: str) -> Morpher:
    """Load a saved :class:`~coffea_f4f.morpher.Morpher`, with a one-line error if there is
    none at ``path``."""
    from ..morpher import load  # torch: imported only by the commands that morph

    try:
        return load(path)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(one_line(err)) from err


def feature_map(morpher: Morpher, pairs: Sequence[tuple[str, str]] | None) -> dict[str, str]:
    """``{feature: branch}``: the features' own names unless ``--branch FEATURE=BRANCH``."""
    inputs = {f: f for f in morpher.features}
    for feature, branch in pairs or []:
        if feature not in inputs:
            raise CLIError(
                f"--branch {feature}={branch}: "
                f"{MissingColumnError(feature, morpher.features, what='model feature')}"
            )
        inputs[feature] = branch
    return inputs


def condition_args(
    morpher: Morpher, condition_branch: str | None, target_condition: str | None
) -> tuple[str | None, str | float | None]:
    """The condition branch and the target condition (a value, or a branch name) to morph
    with, checked against the kind of model (``--condition-branch``, ``--target-condition``)."""
    if morpher.condition is None:
        if condition_branch is not None or target_condition is not None:
            raise CLIError(
                "this model is not conditional; drop --condition-branch and --target-condition"
            )
        return None, None
    if len(morpher.conditions) > 1:
        raise CLIError(
            f"this model has several conditions {morpher.conditions}; apply and evaluate read "
            "one condition branch: use coffea_f4f.MorphTransform (condition= a mapping) instead"
        )
    cond = condition_branch or morpher.conditions[0]
    if not morpher.between_conditions:
        if target_condition is not None:
            raise CLIError(
                "--target-condition is only for models trained with "
                "fit_condition_morpher (morphs between condition values)"
            )
        return cond, None
    if target_condition is None:
        raise CLIError(
            f"this model morphs between values of {morpher.condition!r}: pass "
            "--target-condition VALUE (or a branch name)"
        )
    try:
        return cond, float(target_condition)
    except ValueError:
        return cond, target_condition


def input_branches(
    inputs: Mapping[str, str], condition: str | None, target_condition: str | float | None
) -> list[str]:
    """The branches to read: the features', the condition's and a target condition branch."""
    return list(
        dict.fromkeys(
            [
                *inputs.values(),
                *([condition] if condition else []),
                *([target_condition] if isinstance(target_condition, str) else []),
            ]
        )
    )


def check_one_kind(inputs: Mapping[str, str], jagged_branches: Collection[str]) -> None:
    """Raise a :class:`CLIError` unless the feature branches are all per-object (in
    ``jagged_branches``) or all per-event: per-event features have no place among per-object
    results."""
    jagged = [b for b in inputs.values() if b in jagged_branches]
    if jagged and len(jagged) != len(inputs):
        flat = [b for b in inputs.values() if b not in jagged]
        raise CLIError(
            f"features mix per-object (jagged) branches {jagged} with per-event "
            f"branches {flat}; morph branches of one kind"
        )


def _is_jagged(column: Any) -> bool:
    return getattr(column, "ndim", 1) > 1


def morph_columns(
    morpher: Morpher,
    data: Mapping[str, Any],
    inputs: Mapping[str, str],
    *,
    condition: str | None = None,
    target_condition: str | float | None = None,
) -> dict[str, Any]:
    """Morph the feature branches of ``data`` with ``morpher``.

    Args:
        morpher: a :class:`~coffea_f4f.morpher.Morpher`.
        data: ``{branch: array}`` holding at least the input (and condition) branches.
        inputs: ``{model feature: branch}`` for every feature of the model.
        condition: branch with the condition, for conditional models.
        target_condition: between-condition models: a value, or a branch of ``data``.

    Returns:
        ``{feature: morphed column}``: jagged (per-object) features come back jagged on the
        input's counts. An event-level condition is used for every object of its event.

    Raises:
        CLIError: the features mix per-object and per-event branches.
        MissingColumnError / ValueError / TypeError: bad input (named branch, shape, count).
    """
    check_one_kind(inputs, {b for b in inputs.values() if _is_jagged(data[b])})
    columns = {feature: data[branch] for feature, branch in inputs.items()}
    morphed = morpher.morph(
        columns,
        condition=None if condition is None else data[condition],
        target_condition=data[target_condition]
        if isinstance(target_condition, str)
        else target_condition,
    )
    return {feature: morphed[feature] for feature in morpher.features}
