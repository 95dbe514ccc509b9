"""Tests for coffea_f4f.systematics: up/down systematics registered as coffea does, without
touching unrelated columns on dask.

The collections are NanoEvents of the generated NanoAOD-schema file (tests/nanoaod_fixture.py)
with synthetic nominal / up / down fields (no model is trained here). The field names avoid
``x``, ``y``, ``z``, ``t``: coffea's vector behaviour takes them for coordinates.
"""

from __future__ import annotations

import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from coffea_f4f.systematics import (
    SYSTEMATICS_FIELD,
    UpDownRegistration,
    add_updown_systematic,
    check_options,
    has_systematic,
    supports_systematics,
    write_columns,
)

sys.path.insert(0, str(Path(__file__).parent))
from nanoaod_fixture import write_nanoaod

pytestmark = [
    pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:You have set steps_per_file:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

coffea = pytest.importorskip("coffea")
dak = pytest.importorskip("dask_awkward")
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory  # noqa: E402

VARIED = {"q": ("q_up", "q_down"), "w": ("w_up", "w_down")}


@pytest.fixture(scope="module")
def nano_path(tmp_path_factory):
    return write_nanoaod(tmp_path_factory.mktemp("nano") / "syst.root", 300, seed=3)


def events_of(path, mode, **kwargs):
    return NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode, **kwargs
    ).events()


def with_values(fatjets):
    """FatJets with q (from msoftdrop) and w (from tau1), each with an up and a down field."""
    wf = dak.with_field if isinstance(fatjets, dak.Array) else ak.with_field
    q, w = fatjets.msoftdrop * 2.0, fatjets["tau1"] + 1.0
    for name, value in {
        "q": q,
        "q_up": q + 3.0,
        "q_down": q - 2.0,
        "w": w,
        "w_up": w * 1.5,
        "w_down": w * 0.5,
    }.items():
        fatjets = wf(fatjets, value, where=name)
    return fatjets


def coffea_reference(fatjets, name, fields):
    """coffea's ``add_systematic`` (eager) with the same up/down values."""
    ref = ak.with_field(fatjets, fatjets.q, "q")  # a copy: add_systematic works in place
    flat = ak.flatten(ref)

    def vary(nominal):  # it sees the nominal field(s) only: the up/down fields by closure
        rows = {f: _pair(flat, f) for f in fields}
        return next(iter(rows.values())) if len(fields) == 1 else ak.zip(rows, depth_limit=1)

    kind = "UpDownSystematic" if len(fields) == 1 else "UpDownMultiSystematic"
    ref.add_systematic(name, kind, fields[0] if len(fields) == 1 else list(fields), vary)
    return ref


def _pair(flat, f):
    up, down = VARIED[f]
    return ak.concatenate([flat[up][:, np.newaxis], flat[down][:, np.newaxis]], axis=1)


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("fields", [("q",), ("q", "w")], ids=["single", "multi"])
def test_same_structure_and_values_as_coffea_add_systematic(nano_path, fields):
    fatjets = with_values(events_of(nano_path, "eager").FatJet)
    ref = coffea_reference(fatjets, "s", fields)
    mine = add_updown_systematic(fatjets, "s", {f: VARIED[f] for f in fields})
    assert SYSTEMATICS_FIELD not in fatjets.fields  # not in place
    assert mine[SYSTEMATICS_FIELD].layout.form == ref[SYSTEMATICS_FIELD].layout.form
    assert ak.to_list(mine[SYSTEMATICS_FIELD]) == ak.to_list(ref[SYSTEMATICS_FIELD])
    kind = "UpDownSystematic" if len(fields) == 1 else "UpDownMultiSystematic"
    assert mine.behavior[("__typestr__", "sSystematics")] == kind
    up, down = mine.systematics.s.up, mine.systematics.s.down
    assert type(up).__name__ == "FatJetArray"
    assert up.layout.content.parameter("collection_name") == "FatJet"
    for f in fields:
        assert ak.all(up[f] == fatjets[VARIED[f][0]])
        assert ak.all(down[f] == fatjets[VARIED[f][1]])
    others = [f for f in ("q", "w") if f not in fields]
    for f in (*others, "pt", "mass", "eta"):  # not varied: the nominal values
        assert ak.all(up[f] == fatjets[f])
    assert ak.all(up.delta_r(fatjets) == 0)  # behaviours work on the variation


def test_sliced_collection_and_two_systematics(nano_path):
    ev = events_of(nano_path, "eager")[37:250]  # offsets that do not start at 0
    fatjets = with_values(ev.FatJet)
    one = add_updown_systematic(fatjets, "a", {"q": VARIED["q"]})
    both = add_updown_systematic(one, "b", {"w": VARIED["w"]})
    assert set(ak.fields(both.systematics)) == {"a", "b"}
    assert ak.all(both.systematics.a.up.q == fatjets.q_up)
    assert ak.all(both.systematics.b.down.w == fatjets.w_down)
    assert ak.all(both.systematics.b.down.q == fatjets.q)
    assert has_systematic(both, "a")
    assert not has_systematic(fatjets, "a")
    with pytest.raises(ValueError, match="'FatJet' already has a systematic named 'a'"):
        add_updown_systematic(both, "a", {"q": VARIED["q"]}, label="FatJet")


def test_events_record_and_plain_records(nano_path):
    ev = events_of(nano_path, "eager")
    lead = ak.fill_none(ak.firsts(ev.FatJet.pt), np.nan)
    ev = write_columns(ev, {("lead",): lead, ("lead_up",): lead + 1, ("lead_down",): lead - 1})
    assert supports_systematics(ev)
    out = add_updown_systematic(ev, "s", {"lead": ("lead_up", "lead_down")})
    assert type(out.systematics.s.up).__name__ == "NanoEventsArray"
    np.testing.assert_array_equal(ak.to_numpy(out.systematics.s.up.lead), ak.to_numpy(lead + 1))
    assert ak.all(out.systematics.s.up.FatJet.pt == ev.FatJet.pt)
    plain = ak.zip({"a": [1.0, 2.0], "a_up": [2.0, 3.0], "a_down": [0.0, 1.0]})
    assert not supports_systematics(plain)
    assert not supports_systematics(ev.SubJet)  # a coffea collection without .systematics
    with pytest.raises(ValueError, match="no coffea Systematic behaviour"):
        add_updown_systematic(plain, "s", {"a": ("a_up", "a_down")})
    # write_columns skips the registration where it is not supported
    got = write_columns(
        ak.zip({"a": [1.0, 2.0]}),
        {("a_up",): plain.a_up, ("a_down",): plain.a_down},
        varied={(): {"a": ("a_up", "a_down")}},
    )
    assert got.fields == ["a", "a_up", "a_down"]


# ----------------------------------------------------------------------------- touching
def test_registration_touches_only_offsets_and_the_varied_values(nano_path):
    fatjets = with_values(events_of(nano_path, "eager").FatJet)
    form, _, _ = ak.to_buffers(fatjets)
    layout, report = ak.typetracer.typetracer_with_report(form)
    tracer = ak.Array(layout, behavior=fatjets.behavior)
    out = UpDownRegistration("s", VARIED)(tracer)
    _ = out.systematics.s.down.w  # reaching a variation reads nothing either
    keys = {
        f: form.content.contents[form.content.fields.index(f)].form_key for f in form.content.fields
    }
    expected = {form.form_key} | {keys[f] for pair in VARIED.values() for f in pair}
    assert set(report.data_touched) == expected


def test_dask_necessary_columns_unchanged_and_values_equal_eager(nano_path):
    ev = events_of(nano_path, "dask", steps_per_file=2)
    before = with_values(ev.FatJet)
    names = ("eta", "q", "q_up", "w_down", "mass")
    needed = {name: dak.necessary_columns(before[name]) for name in names}  # before registering
    after = add_updown_systematic(before, "s", VARIED)
    events = dak.with_field(ev, after, where="FatJet")
    fj = events.FatJet
    up, down = fj.systematics.s.up, fj.systematics.s.down
    for name in names:
        assert dak.necessary_columns(fj[name]) == needed[name], name
    assert SYSTEMATICS_FIELD not in before.fields  # not in place (coffea's is)
    (cols,) = dak.necessary_columns(up.q).values()
    # the up values, and the down values read while building the pair: all from these
    assert set(cols) == {"nFatJet", "FatJet_msoftdrop", "FatJet_tau1"}
    (cols,) = dak.necessary_columns(fj.eta).values()
    assert set(cols) == {"nFatJet", "FatJet_eta", "FatJet_msoftdrop", "FatJet_tau1"}
    (cols,) = dak.necessary_columns(up.delta_r(fj)).values()
    assert {"FatJet_eta", "FatJet_phi"} <= set(cols)
    assert not {"FatJet_tau2", "FatJet_tau3", "FatJet_jetId", "nSubJet"} & set(cols)
    eager = add_updown_systematic(with_values(events_of(nano_path, "eager").FatJet), "s", VARIED)
    for got, ref in (
        (up.q, eager.systematics.s.up.q),
        (down.w, eager.systematics.s.down.w),
        (up.pt, eager.pt),
        ((up[:, :1] + fj[:, :1]).mass, (eager.systematics.s.up[:, :1] + eager[:, :1]).mass),
    ):
        assert ak.to_list(got.compute()) == ak.to_list(ref)
    virtual = add_updown_systematic(
        with_values(events_of(nano_path, "virtual").FatJet), "s", VARIED
    )
    assert ak.to_list(virtual.systematics.s.up.w) == ak.to_list(eager.systematics.s.up.w)
    # a duplicate name is refused while the graph is built
    with pytest.raises(ValueError, match="already has a systematic named 's'"):
        add_updown_systematic(after, "s", VARIED)


def test_tokenize_depends_on_name_and_fields():
    from dask.base import tokenize

    a = UpDownRegistration("s", VARIED)
    assert tokenize(a) == tokenize(UpDownRegistration("s", dict(reversed(VARIED.items()))))
    assert tokenize(a) != tokenize(UpDownRegistration("t", VARIED))
    assert tokenize(a) != tokenize(UpDownRegistration("s", {"q": VARIED["q"]}))
    assert a.kind == "UpDownMultiSystematic"
    assert UpDownRegistration("s", {"q": VARIED["q"]}).kind == "UpDownSystematic"


def test_check_options():
    inputs = {"a": "FatJet.a", "b": lambda e: e.b}
    check_options(inputs, 3, True, "f4f", False)
    with pytest.raises(ValueError, match=r"ensemble of at least 2 members.*ensemble=K"):
        check_options(inputs, 1, True, "f4f", False)
    with pytest.raises(ValueError, match="identifier"):
        check_options(inputs, 3, True, "__f4f__", False)
    with pytest.raises(ValueError, match="identifier"):
        check_options(inputs, 3, True, "f4f.up", False)
    with pytest.raises(ValueError, match="input 'b' is a callable"):
        check_options(inputs, 0, False, "f4f", True)
    with pytest.raises(TypeError, match="True or False"):
        check_options(inputs, 0, 1, "f4f", False)
