"""Warnings and errors where the user wants one: conditions clamped to the training range warn
once per call (:class:`ConditionClampWarning`, naming the condition, the count and the
range), and :class:`~coffea_f4f.MorphTransform` callables that return the wrong number of
values or no numbers raise an error naming the input or condition."""

from __future__ import annotations

import pickle
import warnings

import awkward as ak
import numpy as np
import pytest
import torch

from coffea_f4f.morpher import ConditionClampWarning

N_ROWS = 537


def _clamp_warnings(record: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in record if issubclass(w.category, ConditionClampWarning)]


def _range(m, name: str = "c") -> str:
    lo, hi = m.condition_ranges[name]
    return f"[{lo:.6g}, {hi:.6g}]"


def _conditions_with_outside(m, n: int, n_outside: int, seed: int = 0) -> np.ndarray:
    """``n`` conditions inside the training range but ``n_outside`` of them (half below,
    half above)."""
    lo, hi = m.condition_range
    rng = np.random.default_rng(seed)
    c = rng.uniform(lo, hi, n)
    idx = rng.choice(n, n_outside, replace=False)
    c[idx[: n_outside // 2]] = lo - 1.0
    c[idx[n_outside // 2 :]] = hi + 1.0
    return c


@pytest.fixture(scope="module")
def between_ensemble():
    """A tiny ``fit_condition_morpher`` model with a 2-member ensemble (a map between values of
    ``c``; has :meth:`~coffea_f4f.Morpher.variations`)."""
    from conftest import QUICK, TINY

    from coffea_f4f.train import fit_condition_morpher

    rng = np.random.default_rng(4)
    c = rng.uniform(0, 1, 600)
    x = rng.normal(size=(600, 2)) + c[:, None]
    torch.set_num_threads(1)
    return fit_condition_morpher(
        {"x": x[:, 0], "y": x[:, 1], "c": c},
        features=["x", "y"],
        condition="c",
        flow=TINY,
        density=TINY,
        train=QUICK,
        ensemble=2,
        ensemble_jobs=1,
    )


# ---------------------------------------------------------------- clamped conditions
def test_clamped_conditions_warn_once_per_call_naming_count_condition_and_range(
    tiny_conditional_morpher,
):
    """Before: clamping was silent. Now one warning per call, not per batch (11 batches of 50
    here), at the caller's line."""
    m = tiny_conditional_morpher
    x = np.zeros((N_ROWS, 2))
    c = _conditions_with_outside(m, N_ROWS, 94)
    for call in (m.morph, m.inverse):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            y = call(x, condition=c, batch_size=50)
        (w,) = _clamp_warnings(record)
        assert str(w.message) == (
            f"condition 'c': 94 of {N_ROWS} values outside the training range {_range(m)} "
            "were clamped to it (condition_policy='clamp'; set 'error' to refuse)"
        )
        assert w.message.clamped == [("condition", "c", 94, N_ROWS, *m.condition_range)]
        assert w.filename == __file__  # the user's call, not a line inside the package
        clipped = np.clip(c, *m.condition_range)
        np.testing.assert_array_equal(y, call(x, condition=clipped, batch_size=50))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing outside: no warning at all
        m.morph(x, condition=np.clip(c, *m.condition_range))


def test_clamp_warning_can_be_filtered_or_turned_into_an_error(tiny_conditional_morpher):
    m = tiny_conditional_morpher
    x, c = np.zeros((20, 2)), np.full(20, 99.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ConditionClampWarning)
        m.morph(x, condition=c)
    assert not _clamp_warnings(record)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConditionClampWarning)
        with pytest.raises(ConditionClampWarning, match="20 of 20"):
            m.morph(x, condition=c)
    assert issubclass(ConditionClampWarning, UserWarning)
    # condition_policy="error" refuses instead, and does not warn
    m.condition_policy = "error"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match="20 of 20 values are outside"):
                m.morph(x, condition=c)
    finally:
        m.condition_policy = "clamp"


def test_clamp_warning_pickles_with_its_counts():
    w = ConditionClampWarning.of([("condition", "mjj", 94, 537, 1500.0, 6000.0)])
    assert "condition 'mjj': 94 of 537 values outside the training range [1500, 6000]" in str(w)
    back = pickle.loads(pickle.dumps(w))
    assert str(back) == str(w)
    assert back.clamped == w.clamped


def test_between_conditions_one_warning_names_condition_and_target(between_ensemble):
    """A map between condition values: the source and the target condition clamped in one
    call give one warning naming both; ``variations`` warns once for the nominal and all the
    members."""
    m = between_ensemble
    x = np.zeros((40, 2))
    c = _conditions_with_outside(m, 40, 6, seed=1)
    t = _conditions_with_outside(m, 40, 10, seed=2)
    for call, kwargs in (
        (m.morph, {}),
        (m.inverse, {}),
        (m.variations, {}),
        (m.variations, {"members": True}),
    ):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            call(x, condition=c, target_condition=t, batch_size=8, **kwargs)
        (w,) = _clamp_warnings(record)
        msg = str(w.message)
        outside = f"values outside the training range {_range(m)}"
        assert msg.startswith(f"condition 'c': 6 of 40 {outside}")
        assert f"; target_condition 'c': 10 of 40 {outside}" in msg
        assert [e[:4] for e in w.message.clamped] == [
            ("condition", "c", 6, 40),
            ("target_condition", "c", 10, 40),
        ]
        assert w.filename == __file__


def test_morph_transform_warns_once_per_chunk(tiny_conditional_morpher):
    """Inside :class:`MorphTransform` the morph runs once per chunk: one warning per chunk
    with clamped values, counting that chunk's rows."""
    from coffea_f4f import MorphTransform

    m = tiny_conditional_morpher
    c = _conditions_with_outside(m, 100, 7, seed=3)
    events = ak.Array({"x": np.zeros(100), "y": np.zeros(100), "c": c})
    transform = MorphTransform(m, inputs={"x": "x", "y": "y"}, condition="c", batch_size=16)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = transform(events)
    (w,) = _clamp_warnings(record)
    assert "condition 'c': 7 of 100 values outside the training range" in str(w.message)
    assert np.isfinite(ak.to_numpy(out.x_morphed)).all()


# ---------------------------------------------------------------- MorphTransform callables
@pytest.fixture
def transform_events():
    rng = np.random.default_rng(0)
    return ak.Array(
        {"x": rng.normal(size=10), "y": rng.normal(size=10), "c": np.full(10, 0.5), "s": ["a"] * 10}
    )


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [
        # before: ValueError "all input arrays must have the same shape" (nothing named)
        (lambda e: np.zeros(12), ValueError, "returned 12 values for 10 events"),
        (lambda e: ak.Array(np.zeros(8)), ValueError, "returned 8 values for 10 events"),
        # before: ValueError "inputs mix jagged (per-object) fields" (a string is a list)
        (lambda e: np.array(["a"] * 10), TypeError, "returned strings"),
        (lambda e: ak.Array(["a"] * 10), TypeError, "returned strings"),
        (lambda e: e.s, TypeError, "returned strings"),
        # before: TypeError "Awkward Array does not support arrays with object dtypes."
        (lambda e: np.array([object()] * 10), TypeError, "returned Python objects"),
        (lambda e: [object()] * 10, TypeError, "returned a list that awkward cannot read"),
        (lambda e: None, TypeError, "returned a scalar"),
        (lambda e: ak.zip({"p": e.x}), TypeError, "is a record with fields"),
        (lambda e: np.zeros(10, dtype=bool), TypeError, "returned values of dtype bool"),
    ],
)
def test_bad_callables_name_the_input_or_condition(
    tiny_conditional_morpher, transform_events, returned, error, message
):
    from coffea_f4f import MorphTransform

    m = tiny_conditional_morpher
    as_input = MorphTransform(m, inputs={"x": "x", "y": returned}, condition="c")
    with pytest.raises(error, match=r"^inputs\['y'\] \(a callable\) " + message):
        as_input(transform_events)
    as_condition = MorphTransform(m, inputs={"x": "x", "y": "y"}, condition=returned)
    with pytest.raises(error, match=r"^condition\['c'\] \(a callable\) " + message):
        as_condition(transform_events)


def test_good_callables_still_work_and_a_string_field_is_named(
    tiny_conditional_morpher, transform_events
):
    from coffea_f4f import MorphTransform

    m = tiny_conditional_morpher
    ref = MorphTransform(m, inputs={"x": "x", "y": "y"}, condition="c")(transform_events)
    for y in (lambda e: e.y, lambda e: ak.to_numpy(e.y), lambda e: ak.to_list(e.y)):
        out = MorphTransform(m, inputs={"x": "x", "y": y}, condition="c")(transform_events)
        np.testing.assert_array_equal(ak.to_numpy(out.y_morphed), ak.to_numpy(ref.y_morphed))
    # a field path to a string field: before, "mix jagged (per-object) fields" (ValueError)
    with pytest.raises(TypeError, match=r"^input 's' holds strings"):
        MorphTransform(m, inputs={"x": "x", "y": "s"}, condition="c")(transform_events)
