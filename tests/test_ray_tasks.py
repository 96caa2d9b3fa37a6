"""Tests of oaprobe.ray_tasks: Ray tasks give the same run folders as training here, a killed task
resumes exactly, errors come back as text, the local instance listens on 127.0.0.1 only, no Ray
process outlives run_tasks (returned, or stopped by SIGTERM or Ctrl-C), and on a cluster an
interrupt cancels our tasks but leaves the cluster running.

Tests marked ``ray`` need the ray extra and are deselected by default: ``pytest -m ray``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from oaprobe import ray_tasks, sweep
from oaprobe.errors import ConfigError
from oaprobe.ray_tasks import RayError
from oaprobe.training import engine
from oaprobe.training.runs import CHECKPOINT, DONE, HISTORY, PREDICTIONS, run_dir, run_id
from oaprobe.workers import WorkerError
from tests.processes import alive, wait_until
from tests.sweep_workers import UnpicklableError

REPO = Path(__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(not ray_tasks.ray_available(), reason="ray extra not installed")
PIDS = "task_pids"


# ---------------------------------------------------------------------------- work functions (run in Ray workers)
def fit_one_epoch_then_die(cfg_json: str, runs_root: str, cache_dir: str | None) -> None:
    """Train one epoch of the run (checkpoint written), then kill this worker process."""
    from oaprobe.config import RunConfig

    cfg = RunConfig.from_dict(json.loads(cfg_json))
    engine.fit(cfg, Path(runs_root), cache_dir=Path(cache_dir) if cache_dir else None, progress=False,
               max_epochs_this_call=1)
    os._exit(1)


def fail_as_told(kind: str, folder: str) -> None:
    """Succeed (leaving a file named ``kind`` that holds the GPUs it sees), or raise the error ``kind`` names."""
    if kind == "unpicklable":
        raise UnpicklableError("planted failure", 3)
    if kind == "worker":
        raise WorkerError("ValueError: planted as text")
    (Path(folder) / kind).write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))


def die_once(folder: str) -> None:
    """Kill this worker process the first time (leaving a marker), return the next."""
    marker = Path(folder) / "died"
    if not marker.exists():
        marker.write_text("")
        os._exit(1)


def sleep_announcing(folder: str, seconds: float = 120) -> None:
    """Write this worker's pid under ``folder/PIDS``, then sleep (a long run's stand-in)."""
    pids = Path(folder) / PIDS
    pids.mkdir(parents=True, exist_ok=True)
    (pids / str(os.getpid())).write_text("")
    time.sleep(seconds)


def sleeping_driver() -> None:
    """A run_tasks parent whose 2 tasks sleep: ``python -c '...sleeping_driver()' FOLDER [ADDRESS]``."""
    folder, address = sys.argv[1], (sys.argv[2:] or [None])[0]
    ray_tasks.run_tasks({"a": (folder,), "b": (folder,)}, sleep_announcing, jobs=2, progress=False, address=address)


# ---------------------------------------------------------------------------- helpers
class _Watch:
    """Record, every 0.2 s in a thread, the descendants of ``pid`` and the addresses they listen on."""

    def __init__(self, pid: int):
        import psutil

        self._root, self._stop = psutil.Process(pid), threading.Event()
        self.pids: dict[int, str] = {}
        self.listening: set[tuple[int, str]] = set()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            for proc in self._root.children(recursive=True):
                try:
                    self.pids.setdefault(proc.pid, proc.name())
                    self.listening |= {(proc.pid, c.laddr.ip) for c in proc.net_connections("inet")
                                       if c.status == psutil.CONN_LISTEN}
                except psutil.Error:
                    pass

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _ray_folders() -> set[Path]:
    """The local instances' temporary folders (run_tasks removes its own)."""
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("oaprobe-ray-*"))


# ---------------------------------------------------------------------------- without ray
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"jobs": 0}, "^jobs = 0; expected >= 1$"),
    ({"num_cpus": 0}, r"^num_cpus = 0; expected > 0 \(CPUs per task\)$"),
    ({"num_gpus": 1.5}, "^num_gpus = 1.5; expected 0, a fraction of one GPU, or a whole number$"),
    ({"num_gpus": -1}, "^num_gpus = -1; expected 0"),
    ({"retries": -1}, "^retries = -1; expected >= 0$"),
])
def test_bad_resources_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ray_tasks.run_tasks({"a": ("x",)}, fail_as_told, **{"jobs": 1, **kwargs})


def test_missing_ray_extra_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(ray_tasks, "ray_available", lambda: False)
    with pytest.raises(RayError, match=r'^executor "ray" needs the ray extra: pip install -e "\.\[ray\]"$'):
        ray_tasks.run_tasks({"a": ("x",)}, fail_as_told, jobs=1)
    assert ray_tasks.run_tasks({}, fail_as_told, jobs=1) == {}  # nothing to do needs no Ray


# ---------------------------------------------------------------------------- with ray
def _tasks(configs, root: Path, cache: Path) -> dict[str, tuple]:
    return {run_id(c): (c.canonical_json(), str(root), str(cache)) for c in configs}


@pytest.mark.ray
@needs_ray
def test_ray_runs_equal_runs_trained_here(smoke_config, volume_cache, tmp_path):
    runs = [("single_oa", 0), ("single_kl", 0), ("dual", 0), ("dual", 1)]
    configs = [smoke_config(mode=m, seed=s, warmup_epochs=0) for m, s in runs]  # 1 epoch each
    for cfg in configs:  # also fills the volume cache the Ray tasks read
        engine.fit(cfg, tmp_path / "here", cache_dir=volume_cache, progress=False)
    tasks = _tasks(configs, tmp_path / "ray", volume_cache)
    assert ray_tasks.run_tasks(tasks, sweep._fit_one, jobs=2, progress=False) == {}
    for cfg in configs:
        here, there = run_dir(cfg, tmp_path / "here"), run_dir(cfg, tmp_path / "ray")
        assert (there / DONE).exists()
        assert (there / PREDICTIONS).read_bytes() == (here / PREDICTIONS).read_bytes()


@pytest.mark.ray
@needs_ray
def test_a_killed_task_resumes_to_the_uninterrupted_result(smoke_config, volume_cache, tmp_path):
    cfg = smoke_config(mode="dual", epochs=2)
    engine.fit(cfg, tmp_path / "here", cache_dir=volume_cache, progress=False)
    tasks = _tasks([cfg], tmp_path / "ray", volume_cache)
    failures = ray_tasks.run_tasks(tasks, fit_one_epoch_then_die, jobs=1, progress=False)
    assert list(failures) == [run_id(cfg)] and failures[run_id(cfg)].startswith("WorkerCrashedError: ")
    there = run_dir(cfg, tmp_path / "ray")
    assert (there / CHECKPOINT).exists() and not (there / DONE).exists()  # killed after epoch 1 of 2
    assert ray_tasks.run_tasks(tasks, sweep._fit_one, jobs=1, progress=False) == {}
    here = run_dir(cfg, tmp_path / "here")
    assert (there / PREDICTIONS).read_bytes() == (here / PREDICTIONS).read_bytes()
    timeless = [pd.read_csv(f / HISTORY).drop(columns="seconds") for f in (there, here)]
    pd.testing.assert_frame_equal(*timeless, check_exact=True)  # both epochs, resumed or not


@pytest.mark.ray
@needs_ray
def test_retries_rerun_a_task_whose_worker_died(tmp_path):
    assert ray_tasks.run_tasks({"a": (str(tmp_path),)}, die_once, jobs=1, progress=False, retries=1) == {}
    (tmp_path / "died").unlink()
    failures = ray_tasks.run_tasks({"a": (str(tmp_path),)}, die_once, jobs=1, progress=False)
    assert list(failures) == ["a"] and failures["a"].startswith("WorkerCrashedError: ")


@pytest.mark.ray
@needs_ray
def test_errors_come_back_as_text_and_the_others_finish(tmp_path):
    kinds = ["ok1", "unpicklable", "worker", "ok2"]
    failures = ray_tasks.run_tasks({k: (k, str(tmp_path)) for k in kinds}, fail_as_told, jobs=2, progress=False,
                                   num_gpus=None)  # no GPU here: none per task
    assert failures == {"unpicklable": "UnpicklableError: planted failure (code 3)",
                        "worker": "ValueError: planted as text"}
    # the others finished, and a task that asked for no GPU sees none
    assert (tmp_path / "ok1").read_text() == (tmp_path / "ok2").read_text() == ""


@pytest.mark.ray
@needs_ray
def test_the_local_instance_listens_on_loopback_only_and_leaves_nothing(tmp_path):
    before, handler = _ray_folders(), signal.getsignal(signal.SIGTERM)
    with _Watch(os.getpid()) as watch:
        tasks = {n: (str(tmp_path), 1.5) for n in "ab"}
        assert ray_tasks.run_tasks(tasks, sleep_announcing, jobs=2, progress=False) == {}
    workers = {int(p.name) for p in (tmp_path / PIDS).iterdir()}
    assert workers <= set(watch.pids) and {"raylet", "gcs_server"} <= set(watch.pids.values())
    assert watch.listening and {ip for _, ip in watch.listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}
    assert wait_until(lambda: not any(alive(p) for p in watch.pids), 10), \
        f"left running: {[(p, n) for p, n in watch.pids.items() if alive(p)]}"
    assert _ray_folders() == before and signal.getsignal(signal.SIGTERM) is handler


def _start_driver(folder: Path, *address: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start :func:`sleeping_driver` in a subprocess, logging to ``folder/driver.log``."""
    with (folder / "driver.log").open("w") as out:
        return subprocess.Popen([sys.executable, "-c", "from tests.test_ray_tasks import sleeping_driver; "
                                 "sleeping_driver()", str(folder), *address], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def _wait_for_tasks(driver: subprocess.Popen, folder: Path) -> None:
    started = wait_until(lambda: len(list((folder / PIDS).glob("*"))) == 2 or driver.poll() is not None, 90)
    assert started and driver.poll() is None, f"driver did not start 2 tasks:\n{(folder / 'driver.log').read_text()}"


def _free_port() -> int:
    with socket.socket() as sock:  # free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def loopback_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, _Watch]]:
    """A one-node Ray cluster on 127.0.0.1 (``ray start --head``); yield (address, a watch of its processes)."""
    import tempfile

    port, folder = _free_port(), tempfile.mkdtemp(prefix="oaprobe-head-")  # short: Ray's socket paths
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
    log = (tmp_path_factory.mktemp("head") / "head.log").open("w")
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with _Watch(head.pid) as watch:
            assert wait_until(lambda: _answers(port) or head.poll() is not None, 60) and head.poll() is None
            yield f"127.0.0.1:{port}", watch
    finally:
        head.terminate()
        head.wait(30)
        for pid in watch.pids if "watch" in locals() else []:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.ray
@needs_ray
def test_an_interrupt_on_a_cluster_cancels_its_tasks_and_leaves_the_cluster_up(loopback_head, tmp_path,
                                                                               monkeypatch):
    address, head = loopback_head
    driver = _start_driver(tmp_path, address, env={"RAY_AUTH_MODE": "token"})
    try:
        _wait_for_tasks(driver, tmp_path)
        os.kill(driver.pid, signal.SIGTERM)
        assert driver.wait(30) != 0
        assert "Interrupted: stopped by SIGTERM" in (tmp_path / "driver.log").read_text()
        workers = [int(p.name) for p in (tmp_path / PIDS).iterdir()]
        assert wait_until(lambda: not any(alive(p) for p in workers), 10), "cancelled tasks still run"
    finally:
        if alive(driver.pid):
            driver.kill()
        driver.wait(10)
    servers = [p for p, name in head.pids.items() if name in ("gcs_server", "raylet")]
    assert len(servers) == 2 and all(alive(p) for p in servers)  # the cluster is not ours to stop
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert ray_tasks.run_tasks({"ok": ("ok", str(tmp_path))}, fail_as_told, jobs=1, progress=False,
                               address=address) == {}  # joined again, and disconnected after
    assert (tmp_path / "ok").exists() and all(alive(p) for p in servers)


@pytest.mark.ray
@needs_ray
@pytest.mark.parametrize(("signum", "shown"), [(signal.SIGTERM, "Interrupted: stopped by SIGTERM"),
                                               (signal.SIGINT, "KeyboardInterrupt")], ids=["SIGTERM", "Ctrl-C"])
def test_an_interrupt_cancels_the_tasks_and_stops_the_local_instance(tmp_path, signum, shown):
    driver = _start_driver(tmp_path)
    try:
        with _Watch(driver.pid) as watch:
            _wait_for_tasks(driver, tmp_path)
            time.sleep(0.5)  # the watch sees every process of the instance
        os.kill(driver.pid, signum)
        assert driver.wait(30) != 0
        assert shown in (tmp_path / "driver.log").read_text()
        workers = {int(p.name) for p in (tmp_path / PIDS).iterdir()}
        assert workers <= set(watch.pids) and "raylet" in watch.pids.values()
        assert wait_until(lambda: not any(alive(p) for p in watch.pids), 10), \
            f"left running: {[(p, n) for p, n in watch.pids.items() if alive(p)]}"
    finally:
        for pid in [driver.pid, *watch.pids] if "watch" in locals() else [driver.pid]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        driver.wait(10)


@pytest.mark.ray
@needs_ray
def test_a_gpu_request_the_local_instance_cannot_meet_is_a_config_error(tmp_path):
    import torch

    want = torch.cuda.device_count() + 1
    before = _ray_folders()
    with pytest.raises(ConfigError, match=f"^num_gpus = {want} per task, but this machine has {want - 1} GPU"):
        ray_tasks.run_tasks({"a": ("ok", str(tmp_path))}, fail_as_told, jobs=1, progress=False, num_gpus=want)
    assert not (tmp_path / "ok").exists() and _ray_folders() == before


@pytest.mark.ray
@needs_ray
def test_an_address_where_nothing_answers_is_one_line_at_once():
    port, start = _free_port(), time.monotonic()
    with pytest.raises(RayError, match=f"^ray address '127.0.0.1:{port}': nothing answers there .*ray start --head"):
        ray_tasks.run_tasks({"a": ("ok", "/nonexistent")}, fail_as_told, jobs=1, address=f"127.0.0.1:{port}")
    assert time.monotonic() - start < 10


@pytest.mark.ray
@needs_ray
@pytest.mark.parametrize(("auth", "hint"), [(None, True), ("token", False)], ids=["auth unset", "auth set"])
def test_a_refused_join_is_one_line_and_names_token_auth_when_unset(monkeypatch, auth, hint):
    def refuse(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:1.\nmore")

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    if auth:
        monkeypatch.setenv("RAY_AUTH_MODE", auth)
    with socket.socket() as head:  # something answers, so the join itself is tried
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        with pytest.raises(RayError) as err:
            ray_tasks._init_cluster(types.SimpleNamespace(init=refuse), address)
    assert str(err.value).startswith(f"ray address {address!r}: Failed to connect to Ray cluster at 127.0.0.1:1.")
    assert "\n" not in str(err.value) and ("RAY_AUTH_MODE=token" in str(err.value)) == hint


@pytest.mark.ray
def test_a_sweep_through_ray_writes_the_same_run_folders_as_a_local_sweep(smoke_config, volume_cache, tmp_path):
    """`run_missing(executor=Executor("ray"))`: same folders, byte-identical predictions, nothing retrained after."""
    from oaprobe.sweep import Executor, run_missing

    grid = [smoke_config(mode=m) for m in ("single_kl", "dual")]
    local = run_missing(grid, tmp_path / "local", jobs=2, cache_dir=volume_cache, progress=False)
    ray_ = run_missing(grid, tmp_path / "ray", jobs=2, cache_dir=volume_cache, progress=False, executor=Executor("ray"))
    assert [f.name for f in local] == [f.name for f in ray_]
    for a, b in zip(local, ray_):
        assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    stamp = [(f / "DONE").stat().st_mtime_ns for f in ray_]
    run_missing(grid, tmp_path / "ray", jobs=2, cache_dir=volume_cache, progress=False, executor=Executor("ray"))
    assert [(f / "DONE").stat().st_mtime_ns for f in ray_] == stamp
