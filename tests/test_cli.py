"""Tests of the command line: RunConfig fields as flags, validate, train (cached), bad values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from oaprobe import cli
from oaprobe.config import RunConfig
from oaprobe.data.manifest import validate_manifest
from oaprobe.training import engine

#: A non-default value for every RunConfig field, and how it is written on the command line.
FLAG_VALUES = {
    "manifest": ("some/where.csv", "some/where.csv"),
    "backbone": ("m3t", "m3t"),
    "width": (0.5, "0.5"),
    "mode": ("dual", "dual"),
    "dual_variant": ("stacked", "stacked"),
    "oa_weight": (0.25, "0.25"),
    "input_shape": ((16, 20, 24), "16,20,24"),
    "epochs": (3, "3"),
    "batch_size": (2, "2"),
    "lr": (0.003, "3e-3"),
    "weight_decay": (0.0, "0"),
    "schedule": ("cosine", "cosine"),
    "select": ("val_kl_qwk", "val_kl_qwk"),
    "class_weighting": (True, "yes"),
    "augment": (True, "true"),
    "seed": (7, "7"),
    "warmup_epochs": (1, "1"),
    "label_smoothing": (0.1, "0.1"),
    "ema_decay": (0.9, "0.9"),
    "grad_clip": (2.5, "2.5"),
}


def _flags(names) -> list[str]:
    out = []
    for name in names:
        out += ["--" + name.replace("_", "-"), FLAG_VALUES[name][1]]
    return out


@pytest.fixture()
def captured_fit(monkeypatch, tmp_path):
    """Replace the engine's fit by a recorder; returns the list of configs it received."""
    seen: list[RunConfig] = []

    def fake_fit(cfg, runs_root, cache_dir=None, **kwargs):
        seen.append(cfg)
        folder = Path(runs_root) / "fake"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"epoch": [1, 2], "val_loss": [0.9, 0.8], "val_oa_auc": [0.7, 0.75], "val_kl_qwk": [0.5, 0.6],
                      "kept": [0, 1]}).to_csv(folder / "history.csv", index=False)
        return folder

    monkeypatch.setattr(engine, "fit", fake_fit)
    return seen


def test_flag_table_covers_every_field():
    assert set(FLAG_VALUES) == {f.name for f in dataclasses.fields(RunConfig)}


def test_every_field_is_a_flag_mapping_one_to_one(captured_fit, tmp_path, capsys):
    names = list(FLAG_VALUES)
    argv = ["train", "--preset", "smoke", "--runs", str(tmp_path / "r"), "--cache", str(tmp_path / "c")] + _flags(names)
    assert cli.main(argv) == 0
    expected = RunConfig.from_dict({n: v for n, (v, _) in FLAG_VALUES.items()})
    assert captured_fit == [expected]
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "fake")


def test_unset_flags_keep_the_preset_settings(captured_fit, tmp_path, capsys):
    argv = ["train", "--preset", "smoke", "--manifest", "m.csv", "--seed", "2", "--runs", str(tmp_path)]
    assert cli.main(argv) == 0
    from oaprobe.config import get_preset

    assert captured_fit == [RunConfig.from_dict({**get_preset("smoke").run, "manifest": "m.csv", "seed": 2})]


def test_sweep_has_every_field_but_the_grid_axes():
    parser = cli.build_parser()
    names = [n for n in FLAG_VALUES if n not in ("backbone", "mode", "seed")]
    args = parser.parse_args(["sweep"] + _flags(names))
    assert cli._overrides(RunConfig, args) == {
        n: list(v) if isinstance(v, tuple) else v for n, (v, _) in FLAG_VALUES.items() if n in names
    }
    assert not {"cfg_backbone", "cfg_mode", "cfg_seed"} & set(vars(args))


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [("--epochs", "many", "epochs"), ("--mode", "triple", "mode"), ("--augment", "maybe", "augment"),
     ("--input-shape", "16,16", "input_shape"), ("--oa-weight", "-1", "oa_weight")],
)
def test_bad_flag_value_exits_2_naming_the_field(captured_fit, tmp_path, capsys, flag, value, field):
    argv = ["train", "--preset", "smoke", "--manifest", "m.csv", "--runs", str(tmp_path), flag, value]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert field in capsys.readouterr().err
    assert captured_fit == []


def test_validate_good_manifest_exits_0(smoke_manifest, capsys):
    assert cli.main(["validate", str(smoke_manifest)]) == 0
    assert "OK" in capsys.readouterr().out


def test_validate_bad_manifest_prints_every_problem(smoke_manifest, tmp_path, capsys):
    table = pd.read_csv(smoke_manifest, dtype=str, keep_default_na=False)
    table.loc[0, "kl"] = "7"
    table.loc[1, "split"] = "holdout"
    bad = tmp_path / "bad.csv"  # its image paths point nowhere from this folder
    table.to_csv(bad, index=False)
    assert cli.main(["validate", str(bad)]) == 1
    out, err = capsys.readouterr()
    problems = validate_manifest(bad)
    assert len(problems) > 2
    assert out.splitlines() == problems
    assert "kl = '7'" in out and "holdout" in out
    assert f"{len(problems)} problem(s)" in err


def test_train_prints_folder_and_second_call_does_not_train(smoke_manifest, volume_cache, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    argv = ["train", "--manifest", str(smoke_manifest), "--preset", "smoke", "--epochs", "1",
            "--runs", str(runs), "--cache", str(volume_cache)]
    assert cli.main(argv) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])  # the engine's epoch lines come first
    assert folder.parent == runs and (folder / "DONE").is_file()

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(engine, "_train_and_write", must_not_train)
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(folder)


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "oaprobe", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "cohort" in done.stdout and "train" in done.stdout


@pytest.mark.parametrize("command", ["train", "sweep", "cohort"])
def test_every_field_flag_has_a_help_text_with_default_and_choices(command):
    from oaprobe.config import CohortConfig, field_docs

    cls = CohortConfig if command == "cohort" else RunConfig
    sub = cli.build_parser()._subparsers._group_actions[0].choices[command]
    helps = {a.dest[4:]: a.help for a in sub._actions if a.dest.startswith("cfg_")}
    assert helps, "no field flags"
    for name, text in helps.items():
        assert field_docs(cls)[name].rstrip(".").replace("``", "") in text
        assert "(default: " in text and "None" not in text.split("(default: ")[1]
    if command == "train":
        assert "choices: single_oa, single_kl, dual" in helps["mode"]
        assert "m3t" in helps["backbone"]


def test_every_command_defaults_to_one_preset():
    parser = cli.build_parser()
    for command in ("cohort", "train", "sweep", "book"):
        assert parser.parse_args([command]).preset == cli.DEFAULT_PRESET


def test_cohort_flags_set_the_cohort_config(monkeypatch, tmp_path, capsys):
    seen = []
    monkeypatch.setattr(cli, "build_cohort", lambda cfg, root, **kw: seen.append(cfg) or tmp_path / "m.csv")
    argv = ["cohort", "--preset", "smoke", "--n-subjects", "30", "--seed", "4", "--shape", "24,24,20", "--label-noise", "0"]
    assert cli.main(argv) == 0
    assert (seen[0].n_subjects, seen[0].seed, seen[0].shape, seen[0].label_noise) == (30, 4, (24, 24, 20), 0.0)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cohort", "--seed", "-1"])
    assert exit_info.value.code == 2 and "CohortConfig.seed" in capsys.readouterr().err


def test_negative_seed_exits_2_before_anything_is_made(smoke_manifest, tmp_path, capsys):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--preset", "smoke", "--manifest", str(smoke_manifest), "--seed", "-5", "--runs", str(runs)])
    assert exit_info.value.code == 2
    assert "RunConfig.seed = -5" in capsys.readouterr().err
    assert not runs.exists()


@pytest.mark.parametrize("command", ["sweep", "book"])
def test_zero_jobs_exits_2(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--preset", "smoke", "--jobs", "0", "--runs", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "--jobs = 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_directory_as_manifest_is_named_as_such(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--preset", "smoke", "--manifest", str(tmp_path), "--runs", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    assert "is a directory" in capsys.readouterr().err


def test_warnings_print_as_one_line(smoke_manifest, monkeypatch):
    import warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    assert cli.main(["validate", str(smoke_manifest)]) == 0
    text = warnings.formatwarning("3 knees skipped", UserWarning, "/x/oai.py", 12, "warnings.warn(...)")
    assert text == "warning: 3 knees skipped\n"


def test_version_and_a_bad_flag_shows_the_subcommands_usage(capsys):
    from oaprobe import __version__

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"oaprobe {__version__}"
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--preset", "smoke", "--epoch", "3"])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert err.startswith("usage: oaprobe train") and "unrecognized arguments: --epoch 3" in err


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_backbone_typo_is_reported_before_any_cohort_is_built(command, tmp_path, capsys):
    flag = ["--backbone", "resnet3dd"] if command == "train" else ["--backbones", "resnet3d,resnet3dd"]
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--preset", "smoke", "--cohorts", str(tmp_path / "cohorts"), "--runs", str(tmp_path / "r"),
                  *flag])
    assert done.value.code == 2 and "resnet3dd" in capsys.readouterr().err
    assert not (tmp_path / "cohorts").exists()


def test_progress_bars_only_on_a_terminal_without_no_color(monkeypatch):
    class Stderr:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(cli.sys, "stderr", Stderr(True))
    assert cli.progress_wanted() and not cli.progress_wanted(no_progress=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli.progress_wanted()
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(cli.sys, "stderr", Stderr(False))
    assert not cli.progress_wanted()


def test_train_says_what_it_kept_or_that_the_run_existed(captured_fit, smoke_manifest, tmp_path, capsys):
    from oaprobe.training.runs import run_dir

    argv = ["train", "--preset", "smoke", "--manifest", str(smoke_manifest), "--runs", str(tmp_path / "r")]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "r" / "fake")
    assert "trained fake: kept epoch 2/2, val loss 0.8000, val OA AUC 0.750, val KL QWK 0.600" in err
    folder = run_dir(captured_fit[0], tmp_path / "r")
    folder.mkdir(parents=True)
    (folder / "DONE").write_text("")
    assert cli.main(argv) == 0
    assert f"already trained: {tmp_path / 'r' / 'fake'}" in capsys.readouterr().err
