"""Tests of oaprobe.sweep under signals: no worker outlives a sweep stopped by SIGTERM or SIGKILL,
and SIGTERM is handled like Ctrl-C while run_missing runs (old handler restored after)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oaprobe.sweep import run_missing
from oaprobe.training import engine
from oaprobe.workers import Interrupted
from tests.processes import alive, wait_until
from tests.sweep_workers import PID_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def sleeping_sweep(smoke_config, tmp_path):
    """Start a 2-worker sweep parent whose workers sleep; yield (parent, worker pids); kill leftovers."""
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([json.loads(smoke_config(seed=s).canonical_json()) for s in range(4)]))
    root = tmp_path / "runs"
    out = (tmp_path / "parent.log").open("w")
    parent = subprocess.Popen(
        [sys.executable, "-c", "from tests.sweep_workers import main; main()", str(configs), str(root)],
        cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    pids: list[int] = []
    try:
        started = wait_until(lambda: len(list((root / PID_DIR).glob("*"))) >= 2 or parent.poll() is not None, 60)
        log = (tmp_path / "parent.log").read_text()
        assert started and parent.poll() is None, f"sweep parent did not start 2 workers:\n{log}"
        pids = [int(p.name) for p in (root / PID_DIR).iterdir()]
        assert all(alive(pid) for pid in pids)
        yield parent, pids
    finally:
        for pid in [parent.pid, *pids]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait(10)
        out.close()


def test_sigterm_stops_the_sweep_and_its_workers(sleeping_sweep, tmp_path):
    parent, pids = sleeping_sweep
    os.kill(parent.pid, signal.SIGTERM)
    assert parent.wait(15) != 0
    # the parent terminates and reaps its workers before it exits (not left to their parent watch)
    assert [pid for pid in pids if alive(pid)] == [], "workers survived SIGTERM"
    assert "Interrupted: stopped by SIGTERM" in (tmp_path / "parent.log").read_text()


def test_workers_exit_when_the_parent_is_killed(sleeping_sweep):
    parent, pids = sleeping_sweep
    os.kill(parent.pid, signal.SIGKILL)
    assert parent.wait(5) == -signal.SIGKILL
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 5), "workers outlived a SIGKILLed parent"


def test_sigterm_interrupts_an_in_process_run_and_the_handler_is_restored(smoke_config, tmp_path, monkeypatch):
    seen = []

    def fit_then_sigterm(cfg, runs_root, cache_dir=None, progress=True, **kwargs):
        seen.append((signal.getsignal(signal.SIGTERM), time.monotonic()))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not interrupt the run")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(engine, "fit", fit_then_sigterm)
    with pytest.raises(Interrupted) as err:
        run_missing([smoke_config()], tmp_path / "runs", jobs=1, cache_dir=None, progress=False)
    (handler, start), = seen
    assert time.monotonic() - start < 4 and isinstance(err.value, KeyboardInterrupt)
    assert err.value.signum == signal.SIGTERM and handler is not before
    assert signal.getsignal(signal.SIGTERM) is before
