"""oaprobe.compare: the decision rule on two configurations' paired seeds, sequential looks that keep
the false-verdict rate at alpha (a null simulation), and the CLI end to end on smoke runs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from oaprobe.analysis import decision
from oaprobe.analysis.decision import ALPHA, DELTAS, decide_with_flags
from oaprobe.compare import (
    Comparison,
    decide_metrics,
    family_sizes,
    planned_looks,
    run_comparison,
    sequential,
    usable_metrics,
)
from oaprobe.config import get_preset
from oaprobe.errors import ConfigError
from tests.report import SMOKE_STUDY, smoke_study_runs


def _rows(diffs: dict[str, np.ndarray], flagged: np.ndarray | None = None) -> pd.DataFrame:
    frames = []
    for metric, d in diffs.items():
        f = np.zeros(d.size, bool) if flagged is None else flagged
        frames.append(pd.DataFrame({"seed": range(d.size), "metric": metric, "variant": 0.8 + d, "baseline": 0.8,
                                    "diff": d, "flagged": f}))
    return pd.concat(frames, ignore_index=True)


def test_looks_and_families_are_declared_before_any_result():
    assert planned_looks(3, 12, 3) == [3, 6, 9, 12] and planned_looks(2, 2) == [2]
    with pytest.raises(ConfigError, match="expected 2 <= first <= max_seeds"):
        planned_looks(4, 3)
    assert family_sizes(["oa_roc_auc", "kl_qwk", "oa_f1", "kl_mae"]) == {"oa_roc_auc": 1, "kl_qwk": 1, "oa_f1": 2,
                                                                           "kl_mae": 2}


def test_each_metric_is_the_decision_rule_with_its_family_and_looks():
    rng = np.random.default_rng(3)
    diffs = {"oa_roc_auc": rng.normal(0.05, 0.01, 6), "kl_qwk": rng.normal(0.0, 0.004, 6),
             "oa_f1": rng.normal(-0.1, 0.01, 6)}
    flagged = np.array([0, 0, 1, 0, 0, 0], bool)
    table = decide_metrics(_rows(diffs, flagged), list(diffs), looks=3).set_index("metric")
    for metric, m in (("oa_roc_auc", 3), ("kl_qwk", 3), ("oa_f1", 3)):
        expected = decide_with_flags(diffs[metric], flagged, DELTAS[metric], ALPHA, m)
        assert table.loc[metric, "verdict"] == expected["verdict"] and table.loc[metric, "alpha"] == ALPHA / m
    assert list(table["verdict"]) == ["helps", "equivalent", "hurts"]  # planted: +0.05, 0, -0.1


def test_single_oa_has_no_kl_metrics(smoke_config):
    base, variant = smoke_config(mode="dual"), smoke_config(mode="single_oa")
    assert usable_metrics(["oa_roc_auc", "kl_qwk"], base, variant) == ["oa_roc_auc"]
    with pytest.raises(ConfigError, match="the variant equals the baseline"):
        Comparison(base, base.replace(seed=4))


def _false_verdict_rate(true_mean: float, sd: float, looks: list[int], false: set[str], reps: int,
                        corrected: bool) -> float:
    rng = np.random.default_rng(12345)
    bad = 0
    for _ in range(reps):
        d = rng.normal(true_mean, sd, looks[-1])
        rows_at = lambda n, d=d: _rows({"kl_qwk": d[:n]})  # noqa: E731
        if corrected:
            _, _, table = sequential(looks, rows_at, ["kl_qwk"])
        else:  # the naive procedure: every look at the full alpha
            for n in looks:
                table = decide_metrics(rows_at(n), ["kl_qwk"], looks=1)
                if table["verdict"].iloc[0] != "inconclusive":
                    break
        bad += table["verdict"].iloc[0] in false
    return bad / reps


@pytest.mark.parametrize("true_mean, false", [(0.0, {"helps", "hurts"}), (0.03, {"equivalent"})])
def test_stopping_when_decided_keeps_false_verdicts_at_alpha_under_the_null(monkeypatch, true_mean, false):
    """No difference (any helps/hurts is false) and a difference of exactly delta (equivalent is
    false): over 600 simulated studies with looks at 3, 6, 9 and 12 seeds, the corrected procedure's
    false-verdict rate stays at most alpha, where peeking at the full alpha each look exceeds it."""
    monkeypatch.setattr(decision, "seeds_needed", lambda *a, **k: None)  # planning only: not the verdict
    looks = planned_looks(3, 12, 3)
    sd = 0.03 if true_mean == 0 else 0.01
    corrected = _false_verdict_rate(true_mean, sd, looks, false, 600, corrected=True)
    naive = _false_verdict_rate(true_mean, sd, looks, false, 600, corrected=False)
    print(f"false-verdict rate at true mean {true_mean}: corrected {corrected:.3f}, naive {naive:.3f}")
    assert corrected <= ALPHA, corrected
    assert naive > ALPHA, naive  # the correction is what holds the rate


# ---------------------------------------------------------------------------- on real smoke runs
@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, smoke_manifest, volume_cache):
    return smoke_study_runs(tmp_path_factory, smoke_manifest, volume_cache)


def test_compare_on_trained_runs_agrees_with_the_books_seed_level_table(smoke_runs, smoke_manifest):
    """dual vs single-KL through compare equals the book's own route (Study.seed_level) on the same runs."""
    from oaprobe.report.study import Study

    root, grid = smoke_runs
    p = get_preset("smoke")
    fields = dict(backbone="resnet3d", epochs=SMOKE_STUDY["epochs"])
    comparison = Comparison(p.run_config(smoke_manifest, mode="single_kl", **fields),
                            p.run_config(smoke_manifest, mode="dual", **fields), ("kl_qwk",))
    result = run_comparison(comparison, [0, 1], root, train=lambda todo: pytest.fail(f"trained {todo}"))
    study = Study.from_grid("smoke", smoke_manifest, grid, root)
    book = study.seed_level(truth=study.main_truth, metrics=["kl_qwk"], m=1).iloc[0]
    ours = result.table.iloc[0]
    for key in ("verdict", "n_seeds", "n_flagged", "verdict_all", "verdict_unflagged"):
        assert ours[key] == book[key], key
    assert ours["mean"] == pytest.approx(book["mean"]) and result.truth == "kl_clean"


def test_cli_trains_what_is_missing_and_prints_the_verdict(smoke_runs, smoke_manifest, tmp_path, capsys):
    from oaprobe.cli import main
    from oaprobe.training.runs import is_done, run_dir

    root, _ = smoke_runs
    argv = ["compare", "--preset", "smoke", "--runs", str(root), "--manifest", str(smoke_manifest), "--cohorts",
            str(tmp_path), "--seeds", "0,1", "--epochs", "1", "--baseline", "epochs=1", "--ema-decay", "0.9",
            "--no-progress"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "[compare] training 2 run(s)" in err  # the dual EMA runs; the book's dual runs were there
    assert "variant: ema_decay = 0.9 (baseline 0.0)" in out and "paired seeds 0,1 (n = 2)" in out
    assert "OA AUC (higher is better):" in out and "KL QWK (higher is better):" in out
    assert "flagged-run rule:" in out and "delta ±0.015" in out
    p = get_preset("smoke")
    assert all(is_done(run_dir(p.run_config(smoke_manifest, backbone="resnet3d", mode="dual", epochs=1, ema_decay=0.9,
                                            seed=s), root)) for s in (0, 1))


@pytest.mark.parametrize("argv, expected", [
    (["--ema-decay", "0.9", "--seeds", "0"], "paired seeds \\[0\\]; expected at least 2"),
    (["--ema-decay", "0.9", "--until-decided"], "--until-decided needs --max-seeds"),
    (["--ema-decay", "0.9", "--baseline", "emadecay=0.9"], "--baseline 'emadecay=0.9'; expected FIELD=VALUE"),
    ([], "the variant equals the baseline"),
    (["--ema-decay", "0.9", "--metric", "kl_kappa"], "metric kl_kappa; expected any of"),
])
def test_cli_refuses_in_one_line(argv, expected, smoke_manifest, tmp_path, capsys):
    from oaprobe.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--preset", "smoke", "--runs", str(tmp_path / "runs"), "--manifest", str(smoke_manifest),
              "--cohorts", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert re.search(expected, err), err


def test_the_exercises_compare_commands_ask_the_comparison_they_name(smoke_manifest, monkeypatch):
    """Each `oaprobe compare` line of the exercises parses and builds two different configurations;
    exercise 1's is stacked minus parallel dual (not stacked vs single-task)."""
    import json
    import shlex

    from oaprobe.book import NOTEBOOKS
    from oaprobe.cli import _comparison, build_parser

    monkeypatch.setattr("oaprobe.cli.preset_manifest", lambda *a, **k: smoke_manifest)  # no course cohort built
    text = "".join("".join(c["source"]) for c in json.loads((NOTEBOOKS / "exercises.ipynb").read_text())["cells"])
    commands = re.findall(r"`(oaprobe compare [^`]*)`", text)
    assert len(commands) >= 6
    built = {}
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        built[command] = _comparison(args)
    first = next(c for cmd, c in built.items() if "--dual-variant stacked" in cmd)
    assert (first.variant.mode, first.baseline.mode) == ("dual", "dual")
    assert (first.variant.dual_variant, first.baseline.dual_variant) == ("stacked", "parallel")
