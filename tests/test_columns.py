import awkward as ak
import numpy as np
import pytest

from coffea_f4f.columns import (
    MissingColumnError,
    condition_matrix,
    get_field,
    replace_fields,
    to_matrix,
)


def records():
    return ak.Array(
        {
            "mjj": [3000.0, 3500.0, 4000.0],
            "mj1": [100.0, 120.0, 90.0],
            "FatJet": [
                {"msoftdrop": [50.0, 60.0], "tau21": [0.5, 0.4]},
                {"msoftdrop": [], "tau21": []},
                {"msoftdrop": [80.0], "tau21": [0.3]},
            ],
        }
    )


def test_flat_records_to_matrix_and_back_keeps_other_fields():
    data = records()
    x, layout = to_matrix(data, ["mj1", "mjj"])
    np.testing.assert_array_equal(x, [[100, 3000], [120, 3500], [90, 4000]])
    out = replace_fields(data, ["mj1"], x[:, :1] * 2, layout)
    assert ak.to_list(out.mj1) == [200.0, 240.0, 180.0]
    assert ak.to_list(out.mjj) == ak.to_list(data.mjj)
    assert ak.to_list(out.FatJet.tau21) == ak.to_list(data.FatJet.tau21)


def test_jagged_fields_flatten_per_object_and_unflatten():
    data = records()
    x, layout = to_matrix(data, ["FatJet.msoftdrop", "FatJet.tau21"])
    assert x.shape == (3, 2)
    np.testing.assert_array_equal(layout.counts, [2, 0, 1])
    out = replace_fields(data, ["FatJet.msoftdrop", "FatJet.tau21"], x + 1, layout)
    assert ak.to_list(out.FatJet.msoftdrop) == [[51.0, 61.0], [], [81.0]]


def test_event_level_field_broadcast_to_objects():
    x, _ = to_matrix(records(), ["FatJet.msoftdrop", "mjj"])
    np.testing.assert_array_equal(x[:, 1], [3000, 3000, 4000])


def test_missing_column_names_close_matches():
    with pytest.raises(MissingColumnError) as err:
        to_matrix(records(), ["mj2"])
    assert isinstance(err.value, KeyError)
    assert "'mj1'" in str(err.value)
    assert "Did you mean" in str(err.value)
    with pytest.raises(MissingColumnError, match="msoftdrop"):
        to_matrix(records(), ["FatJet.msoftdrp"])
    with pytest.raises(MissingColumnError, match="'b'"):
        to_matrix({"a": np.zeros(3), "b": np.zeros(3)}, ["bb"])


def test_non_finite_names_feature_and_count():
    data = {"a": np.array([1.0, np.nan, np.inf, 2.0]), "b": np.array([0.0, 1.0, 2.0, np.nan])}
    with pytest.raises(ValueError, match=r"'a': 2 of 4.*'b': 1 of 4"):
        to_matrix(data, ["a", "b"])


def test_shapes_and_types_are_checked():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        to_matrix(np.zeros((5, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        to_matrix({"a": np.zeros((4, 2))}, ["a"])
    with pytest.raises(TypeError, match="not a number"):
        to_matrix({"a": np.array(["x", "y"])}, ["a"])
    with pytest.raises(TypeError, match="record"):
        to_matrix(records(), ["FatJet"])
    with pytest.raises(ValueError, match="different lengths"):
        to_matrix({"a": np.zeros(3), "b": np.zeros(4)}, ["a", "b"])
    with pytest.raises(TypeError, match="unsupported input"):
        to_matrix([[1.0, 2.0]], ["a", "b"])
    with pytest.raises(ValueError, match="None"):
        to_matrix(ak.Array({"a": [1.0, None]}), ["a"])


def test_jagged_rejected_where_event_level_needed():
    with pytest.raises(ValueError, match="jagged"):
        to_matrix(records(), ["FatJet.msoftdrop"], allow_jagged=False)


def test_mapping_with_jagged_fields_comes_back_jagged():
    data = {"a": ak.Array([[1.0, 2.0], [], [3.0]]), "b": ak.Array([[4.0, 5.0], [], [6.0]])}
    x, layout = to_matrix(data, ["a", "b"])
    out = replace_fields(data, ["a", "b"], x * 10, layout)
    assert ak.to_list(out["a"]) == [[10.0, 20.0], [], [30.0]]


def test_event_level_field_morphed_per_object_cannot_be_written_back():
    data = records()
    x, layout = to_matrix(data, ["FatJet.msoftdrop", "mjj"])
    with pytest.raises(ValueError, match="'mjj' is one value per event"):
        replace_fields(data, ["FatJet.msoftdrop", "mjj"], x, layout)


# ---------------------------------------------------------------- paths and suggestions
def test_tuple_and_dotted_paths_are_the_same_column():
    data = records()
    a, _ = to_matrix(data, ["FatJet.msoftdrop"])
    b, _ = to_matrix(data, [("FatJet", "msoftdrop")])
    np.testing.assert_array_equal(a, b)
    out = replace_fields(data, [("FatJet", "msoftdrop")], a * 0 + 7, _)
    assert ak.to_list(out.FatJet.msoftdrop) == [[7.0, 7.0], [], [7.0]]


def test_misspelt_collection_suggests_the_repaired_path_stably():
    data = ak.Array({"Jet": [{"pt": [1.0], "eta": [0.1]}], "FatJet": [{"pt": [2.0]}], "nJet": [1]})
    messages = set()
    for _ in range(3):
        with pytest.raises(MissingColumnError) as err:
            get_field(data, "Jets.pt")
        messages.add(str(err.value))
    assert len(messages) == 1  # the same message every time
    assert err.value.suggestions[0] == "Jet.pt"
    with pytest.raises(MissingColumnError) as err:
        get_field(data, "Jet.ptt")
    assert err.value.suggestions == ["Jet.pt"]
    assert err.value.available == ["Jet.pt", "Jet.eta"]  # the fields where the lookup failed


# ---------------------------------------------------------------- pandas (by name)
def test_dataframe_is_read_by_column_name_and_morph_returns_a_dataframe(tiny_morpher):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 2))
    df = pd.DataFrame({"x": x[:, 0], "y": x[:, 1], "w": np.arange(50.0)})
    swapped = df[["y", "w", "x"]]  # reordered columns must not swap the features
    ref = tiny_morpher.morph(x)
    for frame in (df, swapped):
        out = tiny_morpher.morph(frame)
        assert isinstance(out, pd.DataFrame)
        assert list(out.columns) == list(frame.columns)
        np.testing.assert_array_equal(out["w"].to_numpy(), np.arange(50.0))
        np.testing.assert_allclose(out[["x", "y"]].to_numpy(), ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(MissingColumnError, match="'x'"):
        tiny_morpher.morph(df.rename(columns={"x": "xx"}))


# ---------------------------------------------------------------- conditions
def test_flat_condition_is_per_event_even_when_objects_equal_events():
    # 3 events, 3 objects: [2, 0, 1] objects; a length guess cannot tell the two apart
    data = ak.Array({"Jet": [{"pt": [1.0, 2.0]}, {"pt": []}, {"pt": [3.0]}]})
    _, layout = to_matrix(data, ["Jet.pt"])
    assert layout.n_rows == layout.n_events == 3
    per_event = np.array([10.0, 20.0, 30.0])
    c = condition_matrix(data, per_event, ["rho"], layout)
    np.testing.assert_array_equal(c[:, 0], [10.0, 10.0, 30.0])  # broadcast, not row by row
    per_object = ak.Array([[1.5, 2.5], [], [3.5]])
    c = condition_matrix(data, per_object, ["rho"], layout)
    np.testing.assert_array_equal(c[:, 0], [1.5, 2.5, 3.5])
    with pytest.raises(ValueError, match="different numbers of objects"):
        condition_matrix(data, ak.Array([[1.0], [], [3.0]]), ["rho"], layout)


def test_event_level_morph_with_objects_equal_events(tiny_conditional_morpher):
    m = tiny_conditional_morpher
    rng = np.random.default_rng(3)
    counts = [2, 0, 1]
    flat = rng.normal(size=(3, 2))
    jets = ak.unflatten(ak.Array({"x": flat[:, 0], "y": flat[:, 1]}), counts)
    per_event = np.array([0.2, 0.9, 0.6])
    out = m.morph(jets, condition=per_event)
    ref = m.morph(flat, condition=np.repeat(per_event, counts))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(out.x)), ref[:, 0], rtol=1e-12)
    wrong = m.morph(flat, condition=per_event)  # what the old length guess computed
    assert not np.allclose(ak.to_numpy(ak.flatten(out.x)), wrong[:, 0])


@pytest.mark.parametrize("n", [256, 512])  # batch sizes that divide N
def test_a_longer_condition_is_rejected_not_truncated(tiny_conditional_morpher, n):
    m = tiny_conditional_morpher
    x = np.zeros((n, 2))
    for cond in (np.zeros(2 * n), np.zeros((2 * n, 1))):
        with pytest.raises(ValueError, match=f"{2 * n} values for {n}"):
            m.morph(x, condition=cond, batch_size=256)
        with pytest.raises(ValueError, match=f"{2 * n} values for {n}"):
            m.morph({"x": x[:, 0], "y": x[:, 1]}, condition=cond, batch_size=256)
    with pytest.raises(ValueError, match=f"{2 * n} values for {n}"):
        m.morph({"x": x[:, 0], "y": x[:, 1], "c": np.zeros(2 * n)}, batch_size=256)


def test_fit_density_on_jagged_features_with_event_level_condition():
    from conftest import QUICK, TINY

    from coffea_f4f import fit_density

    rng = np.random.default_rng(2)
    counts = rng.integers(0, 4, 300)
    n_obj = int(counts.sum())
    rho = rng.uniform(10, 40, 300)
    events = ak.Array(
        {
            "Jet": ak.unflatten(
                ak.Array({"pt": rng.exponential(30, n_obj) + 20, "eta": rng.normal(size=n_obj)}),
                counts,
            ),
            "fixedGridRhoFastjetAll": rho,
        }
    )
    d = fit_density(
        events,
        features=["Jet.pt", "Jet.eta"],
        condition="fixedGridRhoFastjetAll",
        flow=TINY,
        train=QUICK,
    )
    lp = d.log_prob(events)
    assert lp.shape == (n_obj,)
    assert np.isfinite(lp).all()
    # the same numbers as the flattened objects with rho repeated per object
    flat = {
        "Jet.pt": ak.to_numpy(ak.flatten(events.Jet.pt)),
        "Jet.eta": ak.to_numpy(ak.flatten(events.Jet.eta)),
        "fixedGridRhoFastjetAll": np.repeat(rho, counts),
    }
    np.testing.assert_allclose(d.log_prob(flat), lp, rtol=1e-12)


# ---------------------------------------------------------------- properties (hypothesis)
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    counts=st.lists(st.integers(0, 4), min_size=0, max_size=12), seed=st.integers(0, 2**16)
)
def test_jagged_round_trip_and_broadcast_follow_the_input_offsets(counts, seed):
    rng = np.random.default_rng(seed)
    n_obj, n_ev = sum(counts), len(counts)
    jets = ak.unflatten(
        ak.Array({"pt": rng.normal(size=n_obj), "eta": rng.normal(size=n_obj)}),
        np.asarray(counts, dtype=np.int64),
    )
    events = ak.zip({"Jet": jets, "rho": rng.normal(size=n_ev)}, depth_limit=1)
    x, layout = to_matrix(events, ["Jet.pt", "Jet.eta"])
    assert x.shape == (n_obj, 2)
    assert layout.n_events == n_ev
    back = replace_fields(events, ["Jet.pt", "Jet.eta"], x, layout)
    assert ak.to_list(back.Jet.pt) == ak.to_list(events.Jet.pt)  # exact: no arithmetic
    assert ak.to_list(ak.num(back.Jet.eta)) == counts
    rho = condition_matrix(events, None, ["rho"], layout)[:, 0]
    np.testing.assert_array_equal(rho, np.repeat(ak.to_numpy(events.rho), counts))
    np.testing.assert_array_equal(
        condition_matrix(events, ak.to_numpy(events.rho), ["rho"], layout)[:, 0], rho
    )
