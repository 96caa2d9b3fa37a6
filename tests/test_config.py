"""Tests of oaprobe.config: strict typed construction, canonical JSON, presets (the run id: tests/training/test_runs.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from oaprobe.config import PRESETS, CohortConfig, RunConfig, get_preset
from oaprobe.errors import ConfigError
from oaprobe.training.runs import run_id


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.csv"
    path.write_text("case_id,subject_id\nk1,s1\n")
    return path


def test_unknown_field_names_it_and_lists_valid_fields():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"manifest": "m.csv", "lamda": 1.0})
    text = str(err.value)
    assert "'lamda'" in text
    for f in dataclasses.fields(RunConfig):
        assert f.name in text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("oa_weight", -1.0),
        ("mode", "triple"),
        ("input_shape", [16, 16]),
        ("input_shape", "16,16,16"),
        ("input_shape", [4, 16, 16]),
        ("epochs", 1.5),
        ("epochs", 0),
        ("augment", "yes"),
        ("lr", "fast"),
        ("lr", float("nan")),
        ("oa_weight", float("inf")),
        ("ema_decay", float("nan")),
        ("ema_decay", 1.0),
        ("warmup_epochs", -1),
        ("grad_clip", -0.5),
        ("grad_clip", float("nan")),
        ("seed", True),
        ("seed", -5),
        ("backbone", 3),
    ],
)
def test_bad_value_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        RunConfig.from_dict({"manifest": "m.csv", field: value})


def test_select_val_kl_qwk_needs_a_kl_head():
    with pytest.raises(ConfigError, match="select"):
        RunConfig.from_dict({"manifest": "m.csv", "mode": "single_oa", "select": "val_kl_qwk"})
    assert RunConfig.from_dict({"manifest": "m.csv", "mode": "dual", "select": "val_kl_qwk"}).select == "val_kl_qwk"


def test_cohort_config_bad_values_name_the_field():
    with pytest.raises(ConfigError, match="label_noise"):
        CohortConfig(label_noise=-0.5)
    with pytest.raises(ConfigError, match="split"):
        CohortConfig.from_dict({"split": [0.5, 0.5, 0.5]})
    with pytest.raises(ConfigError, match="shape"):
        CohortConfig.from_dict({"shape": [8, 32, 32]})
    with pytest.raises(ConfigError, match="split"):
        CohortConfig.from_dict({"split": [float("nan"), 0.5, 0.5]})
    with pytest.raises(ConfigError, match="spacing"):
        CohortConfig.from_dict({"spacing": [-1.0, 2.0, 2.0]})
    with pytest.raises(ConfigError, match="label_noise"):
        CohortConfig(label_noise=float("nan"))  # direct construction is checked too


def test_from_dict_to_dict_round_trip():
    cfg = RunConfig.from_dict({"manifest": "m.csv", "input_shape": [16, 20, 24], "mode": "single_kl", "epochs": 3.0})
    assert cfg.input_shape == (16, 20, 24) and cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    cohort = CohortConfig(n_subjects=10, shape=(16, 16, 16))
    assert CohortConfig.from_dict(cohort.to_dict()) == cohort


@pytest.mark.parametrize("mode", ["single_oa", "single_kl"])
def test_single_mode_canonicalises_the_dual_only_fields(mode, manifest):
    """A lambda or dual-variant sweep never retrains a single-task run: its run id ignores them."""
    a = RunConfig.from_dict({"manifest": str(manifest), "mode": mode, "dual_variant": "stacked", "oa_weight": 0.25})
    b = RunConfig.from_dict({"manifest": str(manifest), "mode": mode})
    assert a == b and a.canonical_json() == b.canonical_json() and run_id(a) == run_id(b)
    dual = RunConfig.from_dict({"manifest": str(manifest), "mode": "dual", "oa_weight": 0.25})
    assert dual.oa_weight == 0.25 and run_id(dual) != run_id(dual.replace(oa_weight=1.0))


def test_single_oa_canonicalises_label_smoothing(manifest):
    """A smoothing sweep never retrains a single-OA run (it has no KL loss); the KL modes keep it."""
    a = RunConfig.from_dict({"manifest": str(manifest), "mode": "single_oa", "label_smoothing": 0.3})
    b = RunConfig.from_dict({"manifest": str(manifest), "mode": "single_oa"})
    assert a.label_smoothing == 0.0 and run_id(a) == run_id(b)
    for mode in ("single_kl", "dual", "ordinal"):
        kept = RunConfig.from_dict({"manifest": str(manifest), "mode": mode, "label_smoothing": 0.3})
        assert kept.label_smoothing == 0.3 and run_id(kept) != run_id(kept.replace(label_smoothing=0.0))


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), "0.1"])
def test_bad_label_smoothing_names_the_field(value):
    with pytest.raises(ConfigError, match="RunConfig.label_smoothing"):
        RunConfig.from_dict({"manifest": "m.csv", "mode": "single_kl", "label_smoothing": value})


def test_mode_accepts_every_mode_of_facts():
    """The study grids iterate MODES; a run may also be the ordinal baseline."""
    import typing

    from oaprobe.facts import ALL_MODES, MODES, ORDINAL

    assert MODES == ("single_oa", "single_kl", "dual") and ALL_MODES == MODES + (ORDINAL,)
    assert typing.get_args(typing.get_type_hints(RunConfig)["mode"]) == ALL_MODES
    cfg = RunConfig.from_dict({"manifest": "m.csv", "mode": "ordinal", "dual_variant": "stacked", "oa_weight": 2.0})
    assert cfg.mode == "ordinal" and (cfg.dual_variant, cfg.oa_weight) == ("parallel", 1.0)


def test_cohort_config_seed_must_be_non_negative():
    with pytest.raises(ConfigError, match="CohortConfig.seed"):
        CohortConfig(seed=-1)


@pytest.mark.parametrize("cls", [RunConfig, CohortConfig])
def test_every_field_has_a_doc(cls):
    from oaprobe.config import field_docs

    docs = field_docs(cls)
    assert set(docs) == {f.name for f in dataclasses.fields(cls)}
    assert all(len(text) > 10 for text in docs.values())


def test_preset_run_config_stacks_backbone_overrides(manifest):
    from oaprobe.config import get_preset

    p = get_preset("default")
    assert p.run_config(manifest, backbone="m3t").input_shape == p.backbone_overrides["m3t"]["input_shape"]
    assert p.run_config(manifest, backbone="m3t", input_shape=(20, 20, 20)).input_shape == (20, 20, 20)
    assert p.run_config(manifest).epochs == p.run["epochs"]


def test_get_preset_unknown_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        get_preset("huge")
    assert "'huge'" in str(err.value)
    for name in PRESETS:
        assert name in str(err.value)


def test_every_preset_run_settings_are_valid():
    for name in PRESETS:
        p = get_preset(name)
        assert p.name == name
        for backbone in p.backbones:
            RunConfig.from_dict({**p.run, **p.backbone_overrides.get(backbone, {}), "manifest": "m.csv",
                                 "backbone": backbone})


def test_label_noise_levels_are_sorted_union_with_cohort_noise():
    smoke = get_preset("smoke")
    assert smoke.cohort.label_noise == 1.0 and smoke.label_noise_levels == (0.0, 1.0)
    assert get_preset("default").label_noise_levels == (0.0, 1.0, 2.0)
    assert get_preset("paper").label_noise_levels == (get_preset("paper").cohort.label_noise,)
    p = dataclasses.replace(smoke, noise_levels=(2.0, 1.0, 0.5))
    assert p.label_noise_levels == (0.5, 1.0, 2.0)


@pytest.mark.parametrize("name", ["course", "default", "gpu", "paper"])
def test_the_book_presets_run_enough_sanity_knees_for_a_deletion_verdict(name):
    from oaprobe.report.saliency import min_deletion_cases

    assert get_preset(name).saliency.sanity_knees >= min_deletion_cases()  # single-OA: one target per knee
