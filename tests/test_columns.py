import awkward as ak
import numpy as np
import pytest

from coffea_f4f.columns import MissingColumnError, replace_fields, to_matrix


def records():
    return ak.Array({
        "mjj": [3000.0, 3500.0, 4000.0],
        "mj1": [100.0, 120.0, 90.0],
        "FatJet": [
            {"msoftdrop": [50.0, 60.0], "tau21": [0.5, 0.4]},
            {"msoftdrop": [], "tau21": []},
            {"msoftdrop": [80.0], "tau21": [0.3]},
        ],
    })


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
    assert "'mj1'" in str(err.value) and "Did you mean" in str(err.value)
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
