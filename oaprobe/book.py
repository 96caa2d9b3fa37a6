"""Build the whole book: cohorts, the sweep, papermill chapters (cached), Jupyter Book HTML.

Every step is skipped when its inputs are unchanged: cohorts reuse their volumes, the sweep
never retrains a finished run, and a chapter is re-executed only when its notebook source,
its parameters, the package source or its run folders changed (the key is stored in the
executed notebook's metadata). A second build with nothing changed only re-renders HTML.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import nbformat
import papermill
import plotly
from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config

from oaprobe.config import DEFAULT_CACHE, DEFAULT_COHORTS, DEFAULT_RUNS, RunConfig, get_preset
from oaprobe.data.manifest import PATH_COLUMNS, manifest_hash, read_manifest, write_manifest
from oaprobe.data.splits import carve_validation, check_leakage, read_split_note, split_note_path
from oaprobe.errors import OaprobeError
from oaprobe.facts import backbone_title
from oaprobe.figures import BOOK_RENDERER_ENV
from oaprobe.io import source_digest, write_atomic
from oaprobe.sweep import (
    LOCAL,
    Executor,
    beyond_grid,
    noise_grid,
    preset_manifest,
    recipe_grid,
    run_missing,
    saliency_missing_runs,
    stacked_grid,
    study_grid,
)
from oaprobe.training.runs import run_dir, run_id
from oaprobe.workers import WorkerError, run_tasks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
GENERATED = Path("book") / "_generated"  # relative to the site folder
STATIC = Path("book") / "_static"
SITE_SOURCES = ("_config.yml", "_toc.yml", "book")
CACHE_KEY = "oaprobe_cache_key"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Chapter:
    """One executed notebook of the book: its source, output name and papermill parameters."""

    source: str
    output: str
    parameters: dict[str, Any] = field(default_factory=dict)
    title: str | None = None  # replaces the notebook's first heading (backbone chapters)


@dataclass(frozen=True)
class BookPlan:
    """Everything a preset's book needs: manifests, run grids and chapters."""

    preset: str
    manifest: Path
    noise_manifests: dict[float, Path]
    main_grid: list[RunConfig]
    extra_grid: list[RunConfig]
    chapters: list[Chapter]

    @property
    def grid(self) -> list[RunConfig]:
        """Every run of the book, each once."""
        return list({c.canonical_json(): c for c in self.main_grid + self.extra_grid}.values())

    @property
    def saliency_grid(self) -> list[RunConfig]:
        """The runs the saliency stage reads: every main-grid run, every seed (claim 3 pairs dual
        with single-task runs by seed; every run explains the same fixed knees)."""
        return list(self.main_grid)


def extra_grid(preset: str, manifest: Path, noise_manifests: dict[float, Path]) -> list[RunConfig]:
    """Runs beyond the main grid, exactly as the chapters ask for them (the same functions): the
    exercises' stacked-dual runs, the "Beyond the dual head" runs, the answer page's reference-recipe
    runs and the label-noise chapter's runs at each strength."""
    grid = stacked_grid(manifest, preset) + beyond_grid(manifest, preset) + recipe_grid(manifest, preset)
    for noisy in noise_manifests.values():
        grid += noise_grid(noisy, preset)
    return grid


#: share of the training subjects a manifest without validation knees gives to a validation split
VAL_FRACTION = 0.15
#: what a derived manifest's sidecar (``<manifest>.json``) records about how it was made
VAL_SPLIT_NOTE = "validation split carved from train"


def validation_manifest(manifest: Path, cohorts_root: Path, seed: int = 0, fraction: float = VAL_FRACTION) -> Path:
    """``manifest`` itself when it has validation knees; else a copy whose validation split is
    ``fraction`` of its training subjects (:func:`oaprobe.data.splits.carve_validation`, seeded).

    The copy lives in ``cohorts_root/with-val/`` (paths rewritten relative to it), named after what
    it was derived from: the source's bytes AND the folder its relative paths resolve against (two
    copies of one dataset with identical manifest text but other volumes get two copies, each
    pointing at its own volumes; a moved source gets a new one). A JSON sidecar says where it came
    from: the runs record the copy as their manifest, so the split is part of every run's record.
    Written atomically and only once; a copy whose sidecar names another source is refused.
    """
    table = read_manifest(manifest, check_volumes=False)
    if (table["split"] == "val").any():
        return Path(manifest)
    source, source_hash = Path(manifest).resolve(), manifest_hash(manifest)
    key = hashlib.sha256(f"{source_hash}\n{source.parent}".encode()).hexdigest()
    folder = Path(cohorts_root) / "with-val"
    out = folder / f"{source.stem}-val{int(round(fraction * 100))}-seed{seed}-{key[:12]}.csv"
    if out.is_file():
        note = read_split_note(out) or {}
        if note.get("source") != str(source) or note.get("source_sha256") != source_hash:
            raise OaprobeError(f"{out}: derived from {note.get('source')!r} (sha256 {note.get('source_sha256')!r}), "
                               f"not from {str(source)!r}; expected its own copy: delete {out} and its .json note")
        return out
    table["split"] = carve_validation(table, fraction, seed)
    check_leakage(table)
    folder.mkdir(parents=True, exist_ok=True)
    for column, absolute in PATH_COLUMNS.items():
        if absolute in table.columns:
            table[column] = [Path(os.path.relpath(p, folder.resolve())).as_posix() if p else "" for p in table[absolute]]
    moved = int((table["split"] == "val").sum())
    note = {"note": VAL_SPLIT_NOTE, "source": str(source), "source_sha256": source_hash,
            "fraction_of_train_subjects": fraction, "seed": seed, "val_knees": moved,
            "val_subjects": int(table.loc[table["split"] == "val", "subject_id"].nunique()),
            "stratified_by": "largest KL grade of the subject"}
    write_atomic(split_note_path(out), (json.dumps(note, indent=2) + "\n").encode())
    return write_manifest(table, out, validate=True)


def plan_book(preset: str, runs_root: Path, cohorts_root: Path, manifest: Path | None = None,
              jobs: int = 1, progress: bool = True) -> BookPlan:
    """Build (or reuse, rendering with ``jobs`` processes) the cohorts and list the runs and chapters
    of ``preset``'s book.

    With ``manifest`` (e.g. a user's OAI-ZIB copy) the book runs on that cohort instead of the
    synthetic one; the label-noise chapter, which needs a known clean grade, is left out. A manifest
    without validation knees gets a validation split from its training subjects
    (:func:`validation_manifest`), which the preset's selection rule needs.
    """
    p = get_preset(preset)
    common: dict[str, Any] = {"preset": preset, "runs_root": _relative(runs_root), "cohorts_root": _relative(cohorts_root)}
    if manifest is None:
        manifest = preset_manifest(preset, cohorts_root, jobs=jobs, progress=progress)
        noise = {lvl: preset_manifest(preset, cohorts_root, lvl, jobs=jobs, progress=progress)
                 for lvl in p.label_noise_levels}
    else:
        read_manifest(manifest)  # every problem of a user's manifest, by row, before any work starts
        manifest, noise = validation_manifest(Path(manifest), cohorts_root), {}
        common["manifest"] = _relative(manifest)
    cohort_title = "The cohort" if "manifest" in common else None  # the notebook's heading names the synthetic one
    chapters = [Chapter("answer.ipynb", "00_answer.ipynb", dict(common)),
                Chapter("cohort.ipynb", "01_cohort.ipynb", dict(common), cohort_title)]
    for i, backbone in enumerate(p.backbones, start=1):
        title = f"Backbone: {backbone_title(backbone)}"
        chapters.append(Chapter("backbone.ipynb", f"backbone_{i}_{backbone}.ipynb", {**common, "backbone": backbone}, title))
    for j, name in enumerate(("results", "latent", "saliency", "label_noise", "methods", "exercises", "beyond"), start=3):
        if (name == "label_noise" and not noise) or (name == "beyond" and not p.lambdas):
            continue
        chapters.append(Chapter(f"{name}.ipynb", f"{j:02d}_{name}.ipynb", dict(common)))
    return BookPlan(
        preset=preset,
        manifest=manifest,
        noise_manifests=noise,
        main_grid=study_grid(manifest, preset),
        extra_grid=extra_grid(preset, manifest, noise),
        chapters=chapters,
    )


#: chapters that write files for the reader to download beside their page (a ``downloads`` parameter)
DOWNLOADS = ("answer.ipynb",)


def with_downloads(chapter: Chapter, generated: Path) -> Chapter:
    """``chapter`` with its ``downloads`` folder set to the executed pages' folder, where the site
    serves its files from (only the chapters of :data:`DOWNLOADS` take one)."""
    if chapter.source not in DOWNLOADS:
        return chapter
    return replace(chapter, parameters={**chapter.parameters, "downloads": _relative(generated)})


def _relative(path: Path) -> str:
    """Path as the notebooks see it (they run in the repository root); relative where possible."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return str(resolved)


def chapter_key(chapter: Chapter, run_ids: list[str], source_digest: str) -> str:
    """Cache key of one executed chapter."""
    h = hashlib.sha256()
    h.update((NOTEBOOKS / chapter.source).read_bytes())
    h.update(json.dumps([chapter.parameters, chapter.title], sort_keys=True).encode())
    h.update(json.dumps(sorted(run_ids)).encode())
    h.update(source_digest.encode())
    return h.hexdigest()


def _stored_key(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("metadata", {}).get(CACHE_KEY)
    except (json.JSONDecodeError, OSError):
        return None


def reader_tags(tags: list[str]) -> list[str]:
    """A code cell's tags in the rendered page: the page reads as a report, its findings first.

    Every code cell's source is left out of the page (the notebook in ``notebooks/`` has it, and
    the methods and rerun pages list the parameters): a result cell shows its output only, and a
    setup cell folded in its notebook (``hide-input``) shows nothing of its code either, so no
    "show code" bar stands above a chapter's findings.
    """
    if "remove-cell" in tags:
        return list(tags)
    return sorted((set(tags) - {"hide-input"}) | {"remove-input"})


_QUIET_MANAGER: list[type] = []


def _quiet_kernel_manager() -> type:
    """A kernel manager whose kernel writes its own log (stderr) to a file beside its sockets, not the
    terminal: on Ctrl-C the kernel's sockets close under it and ipykernel would print a ZMQError
    traceback after the command's one line. A cell's error still reaches papermill as a message."""
    if not _QUIET_MANAGER:
        class QuietKernelManager(AsyncKernelManager):
            async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
                with open(Path(self.ip).parent / "kernel-stderr.log", "ab") as log:
                    return await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": log})

        _QUIET_MANAGER.append(QuietKernelManager)
    return _QUIET_MANAGER[0]


def execute_chapter(chapter: Chapter, key: str, out_dir: Path = ROOT / GENERATED, notebooks: Path | None = None,
                    progress: bool = False) -> bool:
    """Execute one chapter with papermill unless its cached copy has ``key``; True if executed.
    ``progress``: papermill's bar of cells (for a person at a terminal; a log gets none)."""
    source = (notebooks or NOTEBOOKS) / chapter.source
    out = out_dir / chapter.output
    if _stored_key(out) == key:
        return False
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.ipynb")
    os.environ[BOOK_RENDERER_ENV] = "1"  # the kernel inherits it: figures render as plain HTML divs
    sockets = tempfile.mkdtemp(prefix="oaprobe-kernel-")
    try:
        papermill.execute_notebook(
            str(source),
            str(tmp),
            parameters=chapter.parameters,
            kernel_name="python3",
            cwd=str(ROOT),
            progress_bar=progress,
            # the kernel talks over local sockets, not TCP (ipykernel warns on unencrypted TCP)
            config=Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}}),
            kernel_manager_class=_quiet_kernel_manager(),
        )
        nb = nbformat.read(tmp, as_version=4)
        nb.metadata[CACHE_KEY] = key
        if chapter.title:
            first = next(c for c in nb.cells if c.cell_type == "markdown")
            lines = first.source.splitlines()
            first.source = "\n".join([f"# {chapter.title}"] + lines[1:])
        for cell in (c for c in nb.cells if c.cell_type == "code"):
            cell.metadata["tags"] = reader_tags(cell.get("metadata", {}).get("tags", []))
        nbformat.write(nb, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(sockets, ignore_errors=True)
        os.environ.pop(BOOK_RENDERER_ENV, None)
    return True


class ChapterError(OaprobeError):
    """Chapters whose notebook failed to execute (their earlier executed copies are kept)."""


def _execute_one(chapter_json: str, key: str, out_dir: str, notebooks: str) -> bool:
    """A worker's task: execute one chapter (given as JSON); errors come back as text."""
    try:
        return execute_chapter(Chapter(**json.loads(chapter_json)), key, Path(out_dir), Path(notebooks))
    except Exception as err:
        raise WorkerError(strip_ansi(f"{type(err).__name__}: {err}")) from None


def strip_ansi(text: str) -> str:
    """``text`` without ANSI colour codes (a kernel's traceback has them; a log file should not)."""
    return ANSI_ESCAPE.sub("", text)


def execute_chapters(chapters: list[Chapter], keys: dict[str, str], out_dir: Path, jobs: int = 2,
                     progress: bool = True) -> list[str]:
    """Execute every chapter whose cached copy is stale, ``jobs`` at a time (each in its own worker
    and kernel: the chapters are independent); return the outputs executed.

    Raises:
        ChapterError: the chapters that failed, each with papermill's message.
    """
    todo = {c.output: (json.dumps(asdict(c)), keys[c.output], str(out_dir), str(NOTEBOOKS))
            for c in chapters if _stored_key(out_dir / c.output) != keys[c.output]}
    if not todo:
        return []
    failures = run_tasks(todo, _execute_one, min(jobs, len(todo)), desc="chapters", progress=progress)
    if failures:
        raise ChapterError("; ".join(f"chapter {name} failed: {error}" for name, error in failures.items()))
    return list(todo)


def stage_site(site: Path) -> Path:
    """Make ``site`` a buildable book folder; the repository root is one already.

    Another folder (e.g. the tests' smoke book) gets a copy of the book's sources, so building it
    never touches the chapters or HTML of the book in the repository root.
    """
    site = Path(site).resolve()
    if site == ROOT:
        return site
    site.mkdir(parents=True, exist_ok=True)
    for name in SITE_SOURCES:
        src, dst = ROOT / name, site / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("_generated", "__pycache__"))
        else:
            shutil.copyfile(src, dst)
    return site


def _install_plotly_js(site: Path) -> None:
    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    dst = site / STATIC / "plotly.min.js"
    if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


#: ``jupyter-book`` with its and Sphinx's colours off: it runs Sphinx in-process and never asks
#: whether its output is a terminal, so a log file would fill with ANSI codes
_JUPYTER_BOOK_NO_COLOUR = ("from sphinx.util.console import nocolor; nocolor(); "
                           "import jupyter_book.utils as u; u.bcolors = dict.fromkeys(u.bcolors, ''); u.endc = ''; "
                           "from jupyter_book.cli.main import main; main(prog_name='jupyter-book')")


def drop_stale_redirect(html_dir: Path) -> None:
    """Delete the built ``index.html`` when it is a redirect, so the build writes it anew: it is only
    written when missing (sphinx-external-toc), and would keep opening the old first page after
    ``_toc.yml``'s root changed (the book used to open on the introduction)."""
    index = Path(html_dir) / "index.html"
    if index.is_file() and 'http-equiv="Refresh"' in index.read_text(encoding="utf-8", errors="replace")[:500]:
        index.unlink()


def build_html(site: Path = ROOT, strict: bool = True, colour: bool | None = None) -> Path:
    """Run ``jupyter-book build`` on ``site``; ``strict`` turns warnings into errors; ``colour``
    (default: stdout is a terminal and ``NO_COLOR`` is unset) keeps Sphinx's coloured output."""
    _install_plotly_js(site)
    drop_stale_redirect(site / "_build" / "html")
    if colour is None:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    launcher = [str(Path(sys.executable).parent / "jupyter-book")] if colour else [sys.executable, "-c",
                                                                                  _JUPYTER_BOOK_NO_COLOUR]
    cmd = [*launcher, "build", str(site)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    return site / "_build" / "html" / "index.html"


def build_book(
    preset: str = "default",
    jobs: int = 2,
    runs_root: Path = DEFAULT_RUNS,
    cohorts_root: Path = DEFAULT_COHORTS,
    cache_dir: Path = DEFAULT_CACHE,
    html: bool = True,
    site: Path = ROOT,
    manifest: Path | None = None,
    executor: Executor = LOCAL,
    progress: bool = True,
) -> Path | None:
    """The README's main command: everything from nothing, skipping what is already done.

    The chapters and HTML go to ``site`` (default: the repository root, so HTML lands in
    ``_build/html``); another folder gets its own copy of the book's sources. ``manifest`` runs the
    book on that cohort (e.g. a user's OAI-ZIB copy) instead of the preset's synthetic one.
    """
    t0 = time.perf_counter()
    plan = plan_book(preset, runs_root, cohorts_root, manifest, jobs, progress)
    print(f"[book] cohorts ready ({time.perf_counter() - t0:.0f}s): {plan.manifest}", flush=True)
    fresh_site = not Path(site).exists()
    site = stage_site(site)
    try:
        return _build_staged(plan, site, t0, dict(jobs=jobs, cache_dir=cache_dir, executor=executor, progress=progress),
                             runs_root, html)
    except BaseException:
        if fresh_site and not (site / GENERATED).is_dir():
            shutil.rmtree(site, ignore_errors=True)  # a failed first build leaves no half-made site folder
        raise


def _build_staged(plan: BookPlan, site: Path, t0: float, work: dict[str, Any], runs_root: Path,
                  html: bool) -> Path | None:
    """:func:`build_book` once the cohorts are ready and ``site`` is staged; ``work``: how the
    runs execute (jobs, cache_dir, executor, progress)."""
    preset = plan.preset
    generated = site / GENERATED
    grid = plan.grid
    run_missing(grid, runs_root, **work)
    print(f"[book] {len(grid)} runs ready ({time.perf_counter() - t0:.0f}s)", flush=True)
    salient = [run_dir(c, runs_root) for c in plan.saliency_grid]
    saliency_missing_runs(salient, get_preset(preset).saliency, **work)
    print(f"[book] saliency of {len(salient)} runs ready ({time.perf_counter() - t0:.0f}s)", flush=True)
    run_ids = [run_id(c) for c in grid] + [f"saliency-{get_preset(preset).saliency.settings_id()}"]
    digest = source_digest()
    chapters = [with_downloads(c, generated) for c in plan.chapters]
    keys = {c.output: chapter_key(c, run_ids, digest) for c in chapters}
    execute_chapters(chapters, keys, generated, work["jobs"], work["progress"])
    stale = {c.output for c in plan.chapters}
    for old in generated.glob("*.ipynb"):
        if old.name not in stale:
            old.unlink()  # a chapter of another preset must not leak into this book
    print(f"[book] chapters ready ({time.perf_counter() - t0:.0f}s)", flush=True)
    if not html:
        return None
    index = build_html(site)
    print(f"[book] built in {time.perf_counter() - t0:.0f}s: {index}", flush=True)
    return index


_SCRIPT = re.compile(r'<script\b[^>]*?\bsrc="([^"]+)"')
_LINK = re.compile(r"<link\b[^>]*>")
_HREF = re.compile(r'\bhref="([^"]+)"')


def page_weight(page: Path) -> dict[str, int]:
    """Bytes a built page loads from the site: its HTML, and every local script and stylesheet it
    links (``?v=`` checksums dropped; remote or missing files count 0). Fonts and images are left out:
    the question is what a page's code and styles cost, e.g. plotly.js (4.8 MB) on a page without figures."""

    html = Path(page).read_text(encoding="utf-8")
    out = {"html": len(html.encode("utf-8")), "js": 0, "css": 0}
    sheets = [_HREF.search(tag) for tag in _LINK.findall(html) if 'rel="stylesheet"' in tag]
    for href in dict.fromkeys(_SCRIPT.findall(html) + [m.group(1) for m in sheets if m]):
        parts = urlsplit(href)
        target = Path(page).parent / unquote(parts.path)
        if parts.scheme or parts.netloc or not target.is_file():
            continue
        out["css" if target.suffix == ".css" else "js"] += target.stat().st_size
    return out


def page_weights(html_root: Path) -> dict[str, dict[str, int]]:
    """:func:`page_weight` of every page of a built book (not its search and index pages), by path."""
    pages = sorted(p for p in Path(html_root).rglob("*.html") if "_static" not in p.parts
                   and p.name not in ("genindex.html", "search.html"))
    return {p.relative_to(html_root).as_posix(): page_weight(p) for p in pages}
