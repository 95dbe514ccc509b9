import pytest

from coffea_f4f.config import FlowConfig, TrainConfig


def test_defaults_and_json_round_trip():
    for cls in (FlowConfig, TrainConfig):
        c = cls()
        assert cls.from_dict(c.to_dict()) == c


def test_frozen_and_keyword_only():
    c = FlowConfig()
    with pytest.raises(AttributeError):
        c.layers = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        FlowConfig("coupling")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cls", "kwargs", "word"),
    [
        (FlowConfig, {"kind": "maf"}, "kind"),
        (FlowConfig, {"layers": 0}, "layers"),
        (FlowConfig, {"tail_bound": -1.0}, "tail_bound"),
        (TrainConfig, {"epochs": 0}, "epochs"),
        (TrainConfig, {"lr": 0}, "lr"),
        (TrainConfig, {"val_fraction": 1.0}, "val_fraction"),
        (TrainConfig, {"device": "tpu"}, "device"),
        (TrainConfig, {"resume": True}, "resume"),
        (TrainConfig, {"patience": 0}, "patience"),
    ],
)
def test_bad_values_name_the_field(cls, kwargs, word):
    with pytest.raises(ValueError, match=word):
        cls(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="hiden"):
        FlowConfig.from_dict({"hiden": 3})


def test_replace_validates():
    assert FlowConfig().replace(layers=3).layers == 3
    with pytest.raises(ValueError, match=r"bins=0: must be an integer >= 1"):
        FlowConfig().replace(bins=0)


def test_presets_give_fit_morpher_arguments():
    import inspect

    import coffea_f4f as f4f
    from coffea_f4f.config import COMPACT, FAST, PAPER, PRESETS

    assert PRESETS == {"fast": FAST, "paper": PAPER, "compact": COMPACT}
    accepted = inspect.signature(f4f.fit_morpher).parameters
    for preset in PRESETS.values():
        kw = preset.fit_kwargs(progress=False, num_threads=1)
        assert set(kw) <= set(accepted)
        assert kw["train"].progress is False
        assert kw["density_train"].num_threads == 1
        assert kw["train"].lr == preset.train.lr  # only the named fields change
    assert PAPER.flow.layers == 8
    assert PAPER.flow.blocks == 3
    assert PAPER.density_train.epochs == 60
    assert FAST.flow.kind == "coupling"
    assert COMPACT.scaling == "minmax"
    assert COMPACT.flow.tail_bound == COMPACT.density.tail_bound == 3.0
    with pytest.raises(ValueError, match="epochs"):
        FAST.fit_kwargs(epochs=0)


@pytest.mark.parametrize("name", ["fast", "compact"])
def test_presets_train(name):
    import numpy as np

    import coffea_f4f as f4f
    from coffea_f4f.config import PRESETS

    preset = PRESETS[name]
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(400, 2)), rng.normal(1.0, 1.0, size=(400, 2))
    m = f4f.fit_morpher(
        xs, xt, features=["a", "b"], **preset.fit_kwargs(epochs=1, progress=False, device="cpu")
    )
    assert m.morph(xs[:5]).shape == (5, 2)
    assert m.map_spec["flow"]["tail_bound"] == preset.flow.tail_bound
    assert m.map_spec["flow"]["bins"] == preset.flow.bins
