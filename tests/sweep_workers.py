"""Work functions for sweep tests, importable by name in spawned pool workers (``run_missing(_work=...)``).

``main`` is the body of a sweep parent that tests start as a subprocess and then signal:
``python -c "from tests.sweep_workers import main; main()" CONFIGS_JSON RUNS_ROOT``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

#: Where a sleeping worker writes its pid (one empty file named by the pid), under the runs root.
PID_DIR = "worker_pids"


def sleep_forever(cfg_json: str, runs_root: str, cache_dir: str | None) -> str:
    """Stand-in for a long fit: announce this worker's pid, then sleep (killed before it wakes)."""
    folder = Path(runs_root) / PID_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).write_text("")
    time.sleep(120)
    return runs_root


class UnpicklableError(Exception):
    """An error that cannot be rebuilt from its pickled args (its ``__init__`` takes two)."""

    def __init__(self, what: str, code: int):
        super().__init__(f"{what} (code {code})")


def fit_failing_odd_seeds(cfg_json: str, runs_root: str, cache_dir: str | None) -> str:
    """The real worker function, with ``engine.fit`` raising :class:`UnpicklableError` for odd seeds."""
    from oaprobe import sweep
    from oaprobe.training import engine

    real = engine.fit

    def fail(*args: object, **kwargs: object) -> None:
        raise UnpicklableError("planted failure", 3)

    if json.loads(cfg_json)["seed"] % 2:
        engine.fit = fail
    try:
        return sweep._fit_one(cfg_json, runs_root, cache_dir)
    finally:
        engine.fit = real


def main() -> None:
    """A 2-worker sweep of ``sys.argv[1]`` (a JSON list of config dicts) whose workers only sleep."""
    from oaprobe.config import RunConfig
    from oaprobe.sweep import run_missing

    configs = [RunConfig.from_dict(d) for d in json.loads(Path(sys.argv[1]).read_text())]
    run_missing(configs, Path(sys.argv[2]), jobs=2, cache_dir=None, progress=False, _work=sleep_forever)
