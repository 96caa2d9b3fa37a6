"""Tests of oaprobe.book: chapter cache keys, cached chapter execution, and the book plan.

The plan test guards against a chapter training something the sweep did not: it runs the
loading statements of the real notebooks (with their parameters as the plan injects them)
with training replaced by a recorder, and checks every requested run is in ``plan.grid``.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill
import pytest

from oaprobe import book
from oaprobe.book import CACHE_KEY, Chapter, chapter_key, execute_chapter, plan_book
from oaprobe.config import get_preset
from oaprobe.errors import OaprobeError
from oaprobe.figures import BOOK_RENDERER_ENV
from oaprobe.report import study as study_module
from oaprobe.training.runs import run_id
from tests.data.fake_oai import import_fake_copy

KERNELSPEC = {"name": "python3", "language": "python", "display_name": "Python 3"}


def _tiny_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Original title\nSome text."),
        nbformat.v4.new_code_cell("preset = 'default'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    nb.metadata["kernelspec"] = KERNELSPEC
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def notebooks(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _tiny_notebook(folder / "tiny.ipynb")
    monkeypatch.setattr(book, "NOTEBOOKS", folder)
    return folder


@pytest.fixture()
def fake_papermill(monkeypatch):
    """papermill.execute_notebook replaced by a copy that injects a parameters cell; records calls."""
    calls = []

    def execute(src, out, parameters=None, **kwargs):
        calls.append({"parameters": parameters, "renderer_env": os.environ.get(BOOK_RENDERER_ENV)})
        nb = nbformat.read(src, as_version=4)
        injected = nbformat.v4.new_code_cell(repr(parameters), metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(2, injected)
        nbformat.write(nb, out)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    return calls


def test_chapter_key_changes_with_each_input(notebooks):
    ch = Chapter("tiny.ipynb", "01_tiny.ipynb", {"preset": "smoke"}, "A title")
    key = chapter_key(ch, ["b", "a"], "digest")
    assert chapter_key(ch, ["a", "b"], "digest") == key  # run order does not matter
    variants = [
        chapter_key(Chapter("tiny.ipynb", "01_tiny.ipynb", {"preset": "course"}, "A title"), ["a", "b"], "digest"),
        chapter_key(Chapter("tiny.ipynb", "01_tiny.ipynb", {"preset": "smoke"}, "B title"), ["a", "b"], "digest"),
        chapter_key(ch, ["a", "c"], "digest"),
        chapter_key(ch, ["a", "b"], "other digest"),
    ]
    assert len({key, *variants}) == 5
    (notebooks / "tiny.ipynb").write_text((notebooks / "tiny.ipynb").read_text().replace("x = 1", "x = 2"))
    assert chapter_key(ch, ["a", "b"], "digest") != key


def test_reader_tags_leave_no_code_on_the_page():
    from oaprobe.book import reader_tags

    assert reader_tags(["hide-input"]) == ["remove-input"]  # no "show code" bar above the findings
    assert reader_tags(["remove-input"]) == ["remove-input"]
    assert reader_tags(["hide-output"]) == ["hide-output", "remove-input"]
    assert reader_tags(["injected-parameters"]) == ["injected-parameters", "remove-input"]
    assert reader_tags(["remove-cell"]) == ["remove-cell"] and reader_tags([]) == ["remove-input"]


def test_execute_chapter_runs_once_per_key(notebooks, fake_papermill, tmp_path):
    out_dir = tmp_path / "generated"
    ch = Chapter("tiny.ipynb", "05_tiny.ipynb", {"preset": "smoke"}, "Backbone: X")
    assert execute_chapter(ch, "key-1", out_dir) is True
    assert len(fake_papermill) == 1 and fake_papermill[0]["parameters"] == {"preset": "smoke"}
    assert fake_papermill[0]["renderer_env"] == "1" and BOOK_RENDERER_ENV not in os.environ
    nb = nbformat.read(out_dir / "05_tiny.ipynb", as_version=4)
    assert nb.metadata[CACHE_KEY] == "key-1"
    assert nb.cells[0].source.splitlines() == ["# Backbone: X", "Some text."]
    tags = {c.source: c.metadata["tags"] for c in nb.cells if c.cell_type == "code"}
    assert tags["preset = 'default'"] == ["parameters", "remove-input"]  # the defaults: not shown
    assert tags["{'preset': 'smoke'}"] == ["injected-parameters", "remove-input"]  # no code on the page
    assert tags["x = 1"] == ["remove-input"]  # a result cell shows its result only
    assert sorted(p.name for p in out_dir.iterdir()) == ["05_tiny.ipynb"]  # no temporary file left

    assert execute_chapter(ch, "key-1", out_dir) is False
    assert len(fake_papermill) == 1
    assert execute_chapter(ch, "key-2", out_dir) is True
    assert len(fake_papermill) == 2


def test_failed_execution_keeps_the_old_chapter(notebooks, monkeypatch, tmp_path):
    out_dir = tmp_path / "generated"
    out_dir.mkdir()
    (out_dir / "05_tiny.ipynb").write_text(json.dumps({"metadata": {CACHE_KEY: "old"}}))

    def boom(src, out, **kwargs):
        Path(out).write_text("partial")
        raise RuntimeError("kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", boom)
    with pytest.raises(RuntimeError, match="kernel died"):
        execute_chapter(Chapter("tiny.ipynb", "05_tiny.ipynb"), "new", out_dir)
    assert json.loads((out_dir / "05_tiny.ipynb").read_text())["metadata"][CACHE_KEY] == "old"
    assert sorted(p.name for p in out_dir.iterdir()) == ["05_tiny.ipynb"]
    assert BOOK_RENDERER_ENV not in os.environ


def test_chapters_execute_in_parallel_workers_and_failures_are_named(notebooks, tmp_path, capfd):
    """Real papermill in 2 spawned workers: stale chapters run, cached ones are skipped, and a
    failing chapter is one OaprobeError naming it while the others still land; the kernels use
    local sockets (no unencrypted-TCP warning) and the error carries no ANSI colour codes."""
    from oaprobe.book import ChapterError, execute_chapters

    bad = nbformat.v4.new_notebook()
    bad.cells = [nbformat.v4.new_code_cell("raise ValueError('planted failure')")]
    bad.metadata["kernelspec"] = KERNELSPEC
    nbformat.write(bad, notebooks / "bad.ipynb")
    good = [Chapter("tiny.ipynb", f"0{i}_tiny.ipynb", {"preset": f"p{i}"}) for i in (1, 2)]
    out_dir = tmp_path / "generated"
    keys = {c.output: f"key-{c.output}" for c in good}
    assert sorted(execute_chapters(good, keys, out_dir, jobs=2, progress=False)) == ["01_tiny.ipynb", "02_tiny.ipynb"]
    for chapter in good:
        nb = nbformat.read(out_dir / chapter.output, as_version=4)
        assert nb.metadata[CACHE_KEY] == keys[chapter.output]
        assert any(chapter.parameters["preset"] in c.source for c in nb.cells)
    assert execute_chapters(good, keys, out_dir, jobs=2, progress=False) == []
    failing = Chapter("bad.ipynb", "03_bad.ipynb")
    with pytest.raises(ChapterError, match="(?s)chapter 03_bad.ipynb failed: .*planted failure") as err:
        execute_chapters([*good, failing], {**keys, "03_bad.ipynb": "k"}, out_dir, jobs=2, progress=False)
    assert isinstance(err.value, OaprobeError)
    assert "\x1b[" not in str(err.value)
    assert "without encryption" not in "".join(capfd.readouterr())
    assert not (out_dir / "03_bad.ipynb").exists()


# ---------------------------------------------------------------------------- the plan
def _is_loader(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and ((isinstance(n.func, ast.Attribute) and n.func.attr == "load")
             or (isinstance(n.func, ast.Name) and n.func.id.startswith("load_")))
        for n in ast.walk(node)
    )


def _run_chapter_loading(chapter: Chapter) -> None:
    """Execute a real notebook's parameter cell, the plan's parameters and its statements up to the loader
    (and the later loaders of that cell, e.g. the answer page's reference-recipe runs)."""
    nb = nbformat.read(book.NOTEBOOKS / chapter.source, as_version=4)
    ns: dict = {}
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    exec(params.source, ns)
    ns.update(chapter.parameters)
    for cell in code[code.index(params) + 1:]:
        body = ast.parse(cell.source).body
        for i, stmt in enumerate(body):
            exec(compile(ast.Module([stmt], []), chapter.source, "exec"), ns)
            if _is_loader(stmt):
                for later in (s for s in body[i + 1:] if _is_loader(s)):
                    exec(compile(ast.Module([later], []), chapter.source, "exec"), ns)
                return
    raise AssertionError(f"{chapter.source}: no loading statement found")


def test_chapters_request_only_runs_of_the_plan(tmp_path, monkeypatch):
    plan = plan_book("smoke", tmp_path / "runs", tmp_path / "cohorts")
    p = get_preset("smoke")
    assert plan.manifest.is_file() and set(plan.noise_manifests) == set(p.label_noise_levels)
    assert [c.output for c in plan.chapters][:4] == ["00_answer.ipynb", "01_cohort.ipynb", "backbone_1_resnet3d.ipynb",
                                                     "backbone_2_nnmamba.ipynb"]

    requested = {}

    def fake_run_dir(cfg, runs_root):
        requested[run_id(cfg)] = cfg
        return Path(runs_root) / run_id(cfg)

    def fake_load_run(folder):
        cfg = requested[Path(folder).name]
        return SimpleNamespace(config=cfg, run_id=run_id(cfg), path=Path(folder))

    monkeypatch.setattr(study_module, "run_dir", fake_run_dir)
    monkeypatch.setattr(study_module, "is_done", lambda folder: True)
    monkeypatch.setattr(study_module, "load_run", fake_load_run)
    monkeypatch.chdir(book.ROOT)  # the notebooks run in the repository root
    for chapter in plan.chapters:
        _run_chapter_loading(chapter)

    grid_ids = {run_id(c) for c in plan.grid}
    assert requested, "no chapter asked for runs"
    assert set(requested) <= grid_ids, sorted(set(requested) - grid_ids)
    # and the plan trains nothing that no chapter reads
    assert grid_ids == set(requested)
    assert len(plan.grid) == len(grid_ids)

    # the guard can fail: a backbone chapter with a parameter the sweep does not use asks for other runs
    requested.clear()
    backbone = next(c for c in plan.chapters if c.source == "backbone.ipynb")
    _run_chapter_loading(Chapter(backbone.source, backbone.output, {**backbone.parameters, "run": {"width": 0.5}}))
    assert requested and not set(requested) & grid_ids
    # a lambda the sweep did not use changes only the dual runs: single-task runs ignore it
    requested.clear()
    _run_chapter_loading(Chapter(backbone.source, backbone.output, {**backbone.parameters, "run": {"oa_weight": 0.5}}))
    outside = {c.mode for rid, c in requested.items() if rid not in grid_ids}
    assert outside == {"dual"}


def test_plan_on_a_user_manifest_runs_everything_there_and_drops_the_noise_chapter(smoke_manifest, tmp_path):
    """A user's manifest replaces the synthetic cohort; without a clean grade there is no label-noise chapter."""
    from oaprobe.book import plan_book

    plan = plan_book("smoke", tmp_path / "runs", tmp_path / "cohorts", manifest=smoke_manifest)
    assert plan.noise_manifests == {}
    assert {c.manifest for c in plan.grid} == {str(smoke_manifest)}
    names = [c.output for c in plan.chapters]
    assert not any("label_noise" in n for n in names)
    assert all(c.parameters["manifest"] for c in plan.chapters)
    assert not (tmp_path / "cohorts").exists()  # nothing synthetic was built


def test_plan_refuses_an_invalid_user_manifest_before_any_work(tmp_path):
    from oaprobe.book import plan_book
    from oaprobe.data.manifest import ManifestError

    bad = tmp_path / "manifest.csv"
    bad.write_text("case_id,subject_id\nk1,s1\n")
    with pytest.raises(ManifestError, match="manifest"):
        plan_book("smoke", tmp_path / "runs", tmp_path / "cohorts", manifest=bad)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- a user's OAI-ZIB copy
@pytest.fixture()
def imported_copy(tmp_path) -> Path:
    """A fake OAIZIB-CM copy imported with the default (release) split: train and test, no val."""
    return import_fake_copy(tmp_path)


def test_plan_on_an_import_without_val_knees_carves_a_recorded_val_split(imported_copy, tmp_path):
    """The release split has no val knees; the preset selects on validation: the plan makes a val split."""
    from oaprobe.data.manifest import read_manifest, split_counts
    from oaprobe.data.splits import read_split_note
    from oaprobe.sweep import validate_grid

    assert split_counts(imported_copy)["val"] == 0
    with pytest.raises(OaprobeError, match="needs validation knees"):
        validate_grid([get_preset("course").run_config(imported_copy)])  # the failure the plan avoids
    plan = plan_book("course", tmp_path / "runs", tmp_path / "cohorts", manifest=imported_copy)
    assert plan.manifest != imported_copy and plan.manifest.parent == tmp_path / "cohorts" / "with-val"
    validate_grid(plan.grid)
    assert {c.manifest for c in plan.grid} == {str(plan.manifest)}
    assert {c.parameters["manifest"] for c in plan.chapters} == {str(plan.manifest.resolve())}
    source, carved = read_manifest(imported_copy), read_manifest(plan.manifest)
    assert list(carved["image_path"]) == list(source["image_path"])  # paths still reach the volumes
    assert (carved["split"] == "val").sum() == 6 and set(source.loc[carved["split"] == "val", "split"]) == {"train"}
    assert (carved["split"] == "test").equals(source["split"] == "test")
    note = read_split_note(plan.manifest)
    assert note["source"] == str(imported_copy.resolve()) and note["val_subjects"] == 3 and note["seed"] == 0
    stamp = plan.manifest.stat().st_mtime_ns
    again = plan_book("course", tmp_path / "runs", tmp_path / "cohorts", manifest=imported_copy)
    assert again.manifest == plan.manifest and plan.manifest.stat().st_mtime_ns == stamp  # written once


def two_copies(tmp_path: Path) -> tuple[Path, Path]:
    """Two imports of one release layout (identical manifest text: the paths are relative) whose
    image volumes differ, as a raw and an N4-corrected copy would."""
    import numpy as np

    from tests.data.conftest import write_nifti

    first, second = import_fake_copy(tmp_path / "raw"), import_fake_copy(tmp_path / "n4")
    assert first.read_bytes() == second.read_bytes()
    rng = np.random.default_rng(1)
    for image in sorted((tmp_path / "n4" / "OAIZIB-CM").glob("images*/*.nii.gz")):
        write_nifti(image, rng.standard_normal((8, 8, 8)).astype(np.float32) + 3)
    return first, second


def test_two_copies_with_one_manifest_text_each_read_their_own_volumes(tmp_path):
    """Issue 33: the derived (validation-split) manifest is keyed by the source's text AND where its
    paths resolve, so the second copy's book is not handed the first copy's volumes."""
    import torch

    from oaprobe.data.dataset import load_volumes
    from oaprobe.data.manifest import read_manifest

    copies = two_copies(tmp_path)
    plans = [plan_book("smoke", tmp_path / "runs", tmp_path / "cohorts", manifest=m) for m in copies]
    assert plans[0].manifest != plans[1].manifest
    volumes = []
    for copy, plan in zip(copies, plans):
        derived, own = read_manifest(plan.manifest), read_manifest(copy)
        assert all(Path(p).resolve().is_relative_to(copy.parent.parent) for p in derived["image_path"])
        got = load_volumes(derived, (8, 8, 8), cache_dir=tmp_path / "cache", progress=False)
        assert torch.equal(got, load_volumes(own, (8, 8, 8), progress=False))
        volumes.append(got)
    assert not torch.equal(volumes[0], volumes[1])
    assert not {run_id(c) for c in plans[0].grid} & {run_id(c) for c in plans[1].grid}


def test_a_derived_manifest_made_from_another_source_is_refused(tmp_path):
    from oaprobe.book import validation_manifest
    from oaprobe.data.splits import split_note_path

    first, second = two_copies(tmp_path)
    derived = validation_manifest(second, tmp_path / "cohorts")
    note = json.loads(split_note_path(derived).read_text())
    split_note_path(derived).write_text(json.dumps({**note, "source": str(first.resolve())}))
    with pytest.raises(OaprobeError, match="not from .*n4"):
        validation_manifest(second, tmp_path / "cohorts")


@pytest.mark.slow
def test_smoke_books_on_two_copies_train_on_their_own_volumes(tmp_path):
    """Both books (one runs folder, one cohorts folder, one volume cache) train every run on the
    volumes of their own copy."""
    from oaprobe.book import build_book
    from oaprobe.data.manifest import data_hash, read_manifest
    from oaprobe.training.runs import load_config

    copies = two_copies(tmp_path)
    for copy in copies:
        build_book("smoke", jobs=1, runs_root=tmp_path / "runs", cohorts_root=tmp_path / "cohorts",
                   cache_dir=tmp_path / "cache", site=tmp_path / copy.parent.parent.name, manifest=copy,
                   html=False, progress=False)
    trained_on: dict[Path, set[str]] = {}
    for folder in (tmp_path / "runs").iterdir():
        cfg = load_config(folder)
        images = read_manifest(cfg.manifest, check_volumes=False)["image_path"]
        copy = next(c for c in copies if Path(images[0]).resolve().is_relative_to(c.parent.parent))
        assert all(Path(p).resolve().is_relative_to(copy.parent.parent) for p in images)
        trained_on.setdefault(copy, set()).add(data_hash(cfg.manifest))
    assert set(trained_on) == set(copies) and not trained_on[copies[0]] & trained_on[copies[1]]


def test_chapters_on_an_imported_copy_request_only_runs_of_the_plan(imported_copy, tmp_path, monkeypatch):
    plan = plan_book("smoke", tmp_path / "runs", tmp_path / "cohorts", manifest=imported_copy)
    requested = {}

    def fake_run_dir(cfg, runs_root):
        requested[run_id(cfg)] = cfg
        return Path(runs_root) / run_id(cfg)

    monkeypatch.setattr(study_module, "run_dir", fake_run_dir)
    monkeypatch.setattr(study_module, "is_done", lambda folder: True)
    monkeypatch.setattr(study_module, "load_run", lambda f: SimpleNamespace(config=requested[Path(f).name], path=Path(f),
                                                                          run_id=Path(f).name))
    monkeypatch.chdir(book.ROOT)
    for chapter in plan.chapters:
        _run_chapter_loading(chapter)
    assert requested and set(requested) <= {run_id(c) for c in plan.grid}


@pytest.mark.slow
def test_smoke_book_builds_on_an_imported_copy_without_val_knees(imported_copy, tmp_path, capfd):
    """The issue-23 path end to end: import (release split, no val) -> book -> HTML, a clean log."""
    from oaprobe.book import build_book

    site = tmp_path / "site"
    index = build_book("smoke", jobs=1, runs_root=tmp_path / "runs", cohorts_root=tmp_path / "cohorts",
                       cache_dir=tmp_path / "cache", site=site, manifest=imported_copy, progress=False)
    assert index is not None and index.is_file()
    pages = {p.stem: p.read_text() for p in (site / "_build" / "html" / "book" / "_generated").glob("*.html")}
    assert "06_label_noise" not in pages and {"00_answer", "01_cohort", "04_latent", "09_beyond"} <= set(pages)
    assert "The cohort" in pages["01_cohort"] and "The synthetic cohort" not in pages["01_cohort"]
    assert "had no validation knees" in pages["01_cohort"]
    log = "".join(capfd.readouterr())
    assert "\x1b[" not in log and "\r" not in log and "without encryption" not in log


def test_a_chapters_missing_runs_command_works_as_printed_on_an_imported_copy(imported_copy, tmp_path, monkeypatch):
    """Each chapter on the book's manifest, with no runs: the `oaprobe sweep` line of its error goes
    through the real CLI and grid validation (the validation split the preset selects on is there),
    and once those runs exist the chapter loads. Chapters that load in stages (exercises, beyond)
    print one command per stage."""
    import re
    import shlex

    from oaprobe import cli, sweep
    from oaprobe.report.missing import RunsMissingError

    plan = plan_book("course", tmp_path / "runs", tmp_path / "cohorts", manifest=imported_copy)
    trained: dict = {}

    def validate_and_record(grid, runs_root, **kwargs):
        sweep.validate_grid(grid)  # what a real sweep checks before training anything
        trained.update({run_id(c): c for c in grid})
        return []

    monkeypatch.setattr(sweep, "run_missing", validate_and_record)
    monkeypatch.setattr(cli, "run_missing", validate_and_record)  # the CLI calls the name it imported
    monkeypatch.setattr(study_module, "is_done", lambda folder: Path(folder).name in trained)
    monkeypatch.setattr(study_module, "load_run", lambda f: SimpleNamespace(config=trained[Path(f).name], path=Path(f),
                                                                          run_id=Path(f).name))
    monkeypatch.chdir(book.ROOT)
    commands = {}
    for chapter in plan.chapters:
        trained.clear()
        commands[chapter.output] = 0
        while True:
            try:
                _run_chapter_loading(chapter)
                break
            except RunsMissingError as err:
                line, missing = re.search(r"`(oaprobe sweep [^`]*)`", str(err)).group(1), err.missing
            commands[chapter.output] += 1
            assert commands[chapter.output] <= 8, f"{chapter.output}: still missing runs after 8 commands"
            before = set(trained)
            for one in line.split(" && "):
                assert cli.main(shlex.split(one)[1:]) == 0
            exactly = {run_id(c) for c in missing}
            assert set(trained) - before == exactly  # what the command trains is exactly what was missing
    assert commands["01_cohort.ipynb"] == 0
    assert {n for n, k in commands.items() if k == 1} >= {"03_results.ipynb", "04_latent.ipynb",
                                                          "05_saliency.ipynb", "07_methods.ipynb"}
    assert commands["00_answer.ipynb"] == 3  # the main grid, the reference-recipe runs, then the lambda runs


def test_page_weight_counts_the_html_and_the_local_scripts_and_stylesheets_it_links(tmp_path):
    from oaprobe.book import page_weight, page_weights

    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "a.js").write_bytes(b"x" * 100)
    (tmp_path / "_static" / "s.css").write_bytes(b"y" * 10)
    (tmp_path / "_static" / "font.woff2").write_bytes(b"z" * 1000)
    html = ('<html><head><script src="_static/a.js?v=1"></script><script src="_static/a.js?v=1"></script>'
            '<script src="https://cdn.example/x.js"></script><link href="_static/s.css" rel="stylesheet" />'
            '<link rel="preload" href="_static/font.woff2" /><script>inline()</script></head></html>')
    (tmp_path / "page.html").write_text(html)
    assert page_weight(tmp_path / "page.html") == {"html": len(html), "js": 100, "css": 10}
    assert list(page_weights(tmp_path)) == ["page.html"]


def test_plotly_loads_only_on_pages_with_a_figure():
    import importlib.util

    from oaprobe.book import ROOT

    spec = importlib.util.spec_from_file_location("plotly_pages", ROOT / "book" / "_ext" / "plotly_pages.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)

    class App:
        added: list = []

        def add_js_file(self, name, **kw):
            self.added.append(name)

    app = App()
    ext._add_plotly(app, "p", "page.html", {"body": "<p>no figure</p>"}, None)
    assert app.added == []
    ext._add_plotly(app, "p", "page.html", {"body": '<script>Plotly.newPlot("x", [])</script>'}, None)
    assert app.added == ["plotly.min.js"]


def test_a_stale_redirect_is_dropped_so_the_book_opens_on_its_current_root(tmp_path):
    from oaprobe.book import drop_stale_redirect

    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />\n')
    drop_stale_redirect(tmp_path)
    assert not (tmp_path / "index.html").exists()
    (tmp_path / "index.html").write_text("<html><body>a real page</body></html>")
    drop_stale_redirect(tmp_path)
    drop_stale_redirect(tmp_path / "missing")
    assert (tmp_path / "index.html").is_file()
