"""The book's folds: readable tables, a CSV that round-trips, escaped sentences, provenance notes."""

import base64
import io
import re

import pandas as pd

from oaprobe.report.display import folded_sentences, folded_table, provenance_note, readable


def _table() -> pd.DataFrame:
    idx = pd.MultiIndex.from_tuples([("resnet3d", "dual"), ("m3t", "single_kl")], names=["backbone", "mode"])
    return pd.DataFrame({"kl_qwk": [0.81234, 0.7], "oa_roc_auc": [0.9, 0.95555]}, index=idx)


def test_readable_rounds_and_names_columns_and_modes():
    out = readable(_table())
    assert list(out.columns) == ["backbone", "mode", "KL QWK", "OA AUC"]
    assert out["KL QWK"].tolist() == [0.812, 0.7]
    assert out["mode"].tolist() == ["dual", "single-KL"]


def test_folded_table_csv_round_trips_unrounded():
    html = folded_table(_table(), "Per-run metrics").data
    assert html.startswith('<details class="oaprobe-fold">') and "(2 rows)" in html and " open" not in html
    payload = re.search(r'href="data:text/csv;base64,([^"]+)"', html).group(1)
    back = pd.read_csv(io.StringIO(base64.b64decode(payload).decode()))
    assert back.columns.tolist() == ["backbone", "mode", "kl_qwk", "oa_roc_auc"]
    assert back["kl_qwk"].iloc[0] == 0.81234
    assert 'download="per-run-metrics.csv"' in html


def test_empty_table_and_sentences_say_so():
    assert "no rows" in folded_table(pd.DataFrame(), "Tests").data
    assert "none" in folded_sentences([], "Per-test sentences").data


def test_sentences_and_provenance_are_escaped():
    html = folded_sentences(["a < b & c", "d"], "Per-test sentences").data
    assert "a &lt; b &amp; c" in html and "(2)" in html and html.count("<li>") == 2
    note = provenance_note("runs <abc>").data
    assert "<summary>Provenance</summary>" in note and "&lt;abc&gt;" in note


def test_open_table_has_no_row_numbers_and_scrolls():
    from oaprobe.report.display import open_table

    html = open_table(_table()).data
    assert html.startswith('<div class="oaprobe-scroll">') and "oaprobe-table" in html
    assert "<th>backbone</th>" in html and "<th>0</th>" not in html and "0.812" in html


def test_readable_text_names_every_raw_identifier_in_a_label():
    from oaprobe.report.display import readable_text, spelled_out

    assert readable_text("dual − single_kl: kl_qwk") == "dual − single-KL: KL QWK"
    assert readable_text("smoothgrad, new_thing") == "SmoothGrad × input, new thing"
    assert readable_text("dual") == "dual"
    assert readable_text("resnet3d") == "ResNet3D" and readable_text("nnmamba") == "nnMamba"
    assert readable_text("train --backbone m3t", unknown=False) == "train --backbone m3t"  # a command stays one
    assert spelled_out("kl_qwk") == "KL quadratic weighted kappa (QWK)" and spelled_out("oa_f1") == "OA F1"


def test_readable_names_identifier_values_but_leaves_knee_ids():
    t = pd.DataFrame({"metric": ["kl_qwk", "oa_roc_auc"], "method": ["smoothgrad", "gradcam"], "case_id": ["S0001_L", "a_b"],
                      "baseline": ["single_kl", "single_oa"], "backbone": ["m3t", "my_net"]})
    out = readable(t)
    assert out["backbone"].tolist() == ["M3T", "my net"]
    assert out["metric"].tolist() == ["KL QWK", "OA AUC"] and out["method"].tolist() == ["SmoothGrad × input", "Grad-CAM"]
    assert out["knee"].tolist() == ["S0001_L", "a_b"] and out["baseline"].tolist() == ["single-KL", "single-OA"]


def test_shown_tables_leave_run_hashes_to_the_csv():
    t = pd.DataFrame({"run_id": ["0123456789ab"], "mode": ["dual"], "test": ["paired_bootstrap"]})
    html = folded_table(t, "Runs").data
    shown = html[html.index("<table"):]
    assert "0123456789ab" not in shown and "paired bootstrap" in shown and "run_id" not in shown
    payload = re.search(r'href="data:text/csv;base64,([^"]+)"', html).group(1)
    assert "0123456789ab" in base64.b64decode(payload).decode()


def test_folded_sentences_name_known_identifiers_only():
    html = folded_sentences(["resnet3d, kl_qwk vs single_kl: run --select val_kl_qwk"], "s").data
    assert "KL QWK vs single-KL" in html and "val_kl_qwk" in html
