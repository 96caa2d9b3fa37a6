"""Command line: ``oaprobe cohort | validate | import-oai | train | sweep | book``.

Every RunConfig field is a flag of ``train`` and ``sweep`` (``--input-shape 32,32,32``,
``--augment true``); values are checked by RunConfig, which names the field on error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from oaprobe.config import MODES, PRESETS, ConfigError, RunConfig, get_preset

_HINTS = typing.get_type_hints(RunConfig)


def _parse_value(name: str, text: str) -> Any:
    """Turn a flag's text into the JSON-like value RunConfig.from_dict expects."""
    ann = _HINTS[name]
    if get_origin(ann) is tuple:
        return [_scalar(get_args(ann)[0], part.strip()) for part in text.split(",")]
    return _scalar(ann, text)


def _scalar(ann: Any, text: str) -> Any:
    if ann is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        return text  # RunConfig reports the bad value with the field name
    for kind in (int, float):
        if ann is kind:
            try:
                return kind(text)
            except ValueError:
                return text
    return text


def _add_run_fields(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group("run configuration (RunConfig fields)")
    for f in dataclasses.fields(RunConfig):
        if f.name in skip:
            continue
        group.add_argument("--" + f.name.replace("_", "-"), dest=f"cfg_{f.name}", metavar="VALUE")


def _run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k[4:]: _parse_value(k[4:], v) for k, v in vars(args).items() if k.startswith("cfg_") and v is not None
    }


def _cmd_cohort(args: argparse.Namespace) -> int:
    from oaprobe.sweep import preset_manifest

    print(preset_manifest(args.preset, args.root, args.label_noise))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from oaprobe.data.manifest import validate_manifest

    problems = validate_manifest(args.manifest)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in {args.manifest}", file=sys.stderr)
        return 1
    print(f"{args.manifest}: OK")
    return 0


def _cmd_import_oai(args: argparse.Namespace) -> int:
    from oaprobe.data.oai import import_oaizib

    print(import_oaizib(args.root, args.out, metadata=args.metadata, split=args.split, seed=args.seed))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from oaprobe.sweep import preset_manifest
    from oaprobe.training.engine import fit

    overrides = _run_overrides(args)
    manifest = overrides.pop("manifest", None) or preset_manifest(args.preset, args.cohorts)
    cfg = RunConfig.from_dict({**get_preset(args.preset).run, **overrides, "manifest": str(manifest)})
    print(fit(cfg, args.runs, cache_dir=args.cache))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from oaprobe.sweep import preset_manifest, run_missing, study_grid

    overrides = _run_overrides(args)
    manifest = overrides.pop("manifest", None) or preset_manifest(args.preset, args.cohorts)
    grid = study_grid(
        manifest,
        args.preset,
        backbones=args.backbones.split(",") if args.backbones else None,
        modes=args.modes.split(","),
        seeds=_int_list("--seeds", args.seeds),
        **overrides,
    )
    for folder in run_missing(grid, args.runs, jobs=args.jobs, cache_dir=args.cache):
        print(folder)
    return 0


def _int_list(flag: str, text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} = {text!r}; expected comma-separated integers, e.g. 0,1,2") from None


def _cmd_book(args: argparse.Namespace) -> int:
    from oaprobe.book import build_book

    kwargs = {"site": args.site} if args.site else {}
    if args.manifest:
        kwargs["manifest"] = args.manifest
    build_book(args.preset, jobs=args.jobs, runs_root=args.runs, cohorts_root=args.cohorts, html=not args.no_html, **kwargs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from oaprobe.sweep import DEFAULT_CACHE, DEFAULT_COHORTS, DEFAULT_RUNS

    parser = argparse.ArgumentParser(prog="oaprobe", description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("cohort", help="build (or reuse) a synthetic cohort; prints the manifest path")
    p.add_argument("--preset", choices=PRESETS, default="default")
    p.add_argument("--label-noise", type=float, default=None, help="override the preset's label noise")
    p.add_argument("--root", type=Path, default=DEFAULT_COHORTS)
    p.set_defaults(func=_cmd_cohort)

    p = sub.add_parser("validate", help="check a manifest; prints every problem, exit 1 if any")
    p.add_argument("manifest", type=Path)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("import-oai", help="turn a local OAIZIB-CM copy into a manifest")
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metadata", type=Path, default=None)
    p.add_argument("--split", choices=("reference", "stratified"), default="reference")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_import_oai)

    for name, func, helptext in (
        ("train", _cmd_train, "train one run (or return the finished one); prints the run folder"),
        ("sweep", _cmd_sweep, "train every missing run of a grid; prints the run folders"),
    ):
        p = sub.add_parser(name, help=helptext, allow_abbrev=False)
        p.add_argument("--preset", choices=PRESETS, default="course", help="run settings and default cohort")
        p.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
        p.add_argument("--cohorts", type=Path, default=DEFAULT_COHORTS)
        p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="disk cache of preprocessed volumes")
        if name == "sweep":
            p.add_argument("--backbones", default=None, help="comma-separated; default: the preset's")
            p.add_argument("--modes", default=",".join(MODES))
            p.add_argument("--seeds", default=None, help="comma-separated; default: the preset's")
            p.add_argument("--jobs", type=int, default=1)
            _add_run_fields(p, skip=("backbone", "mode", "seed"))
        else:
            _add_run_fields(p)
        p.set_defaults(func=func)

    p = sub.add_parser("book", help="build the whole book: cohort, sweep, notebooks, jupyter-book")
    p.add_argument("--preset", choices=PRESETS, default="default")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    p.add_argument("--cohorts", type=Path, default=DEFAULT_COHORTS)
    p.add_argument("--no-html", action="store_true", help="execute the notebooks but skip jupyter-book")
    p.add_argument("--manifest", type=Path, default=None,
                   help="run the book on this manifest (e.g. your OAI-ZIB copy) instead of the synthetic cohort")
    p.add_argument("--site", type=Path, default=None,
                   help="build chapters and HTML in this folder instead of the repository root (HTML: SITE/_build/html)")
    p.set_defaults(func=_cmd_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    from oaprobe.data.manifest import ManifestError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ManifestError) as err:
        parser.exit(2, f"oaprobe {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: finished runs are kept; unfinished ones resume next time\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
