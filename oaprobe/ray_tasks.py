"""Run the tasks of :func:`oaprobe.workers.run_tasks` as Ray tasks, on a local instance or a cluster.

Same contract as the local pool: ``work(*args)`` per ``name -> args``, the tasks' errors come back
as text, and nothing outlives the command. Without an address a local Ray instance is started for
this call only, bound to 127.0.0.1 (Ray would otherwise listen on every interface), in its own
temporary folder, and shut down after; with one (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``)
the call joins that cluster and leaves it running. On Ctrl-C or SIGTERM the tasks in flight are
cancelled (their workers killed; a run's last checkpoint stays and resumes next time) before the
interrupt propagates. If this process is killed outright (SIGKILL), Ray's reaper stops the local
instance; its agents follow within about a minute and the temporary folder stays. Ray is an
optional extra: ``pip install -e ".[ray]"``.

Example:
    >>> isinstance(ray_available(), bool)
    True
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from tqdm.auto import tqdm

from oaprobe.errors import ConfigError, OaprobeError
from oaprobe.workers import Interrupted, WorkerError

LOCAL = "local"  #: the address that means "start a local instance", like None
_CONNECT_TIMEOUT_S = 5.0
_CANCEL_GRACE_S = 10.0
_POLL_S = 0.5  # ray.wait timeout, so Ctrl-C and SIGTERM are handled while tasks run
# Ray maps a loopback node address to the machine's routable one unless this is off (Ray's own switch).
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayError(OaprobeError, RuntimeError):
    """Ray is not installed, or the cluster at the given address cannot be reached or used."""


def ray_available() -> bool:
    """True when the optional ``ray`` extra is installed (without importing it)."""
    return importlib.util.find_spec("ray") is not None


def _import_ray() -> ModuleType:
    if not ray_available():
        raise RayError('executor "ray" needs the ray extra: pip install -e ".[ray]"')
    import ray  # deferred: an optional extra

    return ray


def run_tasks(tasks: dict[str, tuple], work: Callable[..., Any], jobs: int, desc: str = "tasks",
              progress: bool = True, label: Callable[[str], str] = str, address: str | None = None,
              num_cpus: float = 1, num_gpus: float | None = 0, retries: int = 0) -> dict[str, str]:
    """Run ``work(*args)`` for every ``name -> args`` of ``tasks`` as Ray tasks, at most ``jobs`` at once, in order.

    Each task asks Ray for ``num_cpus`` CPUs (it trains with that many threads, at least 1) and
    ``num_gpus`` GPUs (a fraction lets several runs share one; None: one each when Ray has GPUs,
    else none; a task that asks for none sees none). A local instance (``address``
    None or ``"local"``) gets ``jobs * num_cpus`` CPUs and the machine's GPUs. ``retries``: how
    often Ray reruns a task whose worker died (a node lost; the rerun resumes the run), 0 like the
    local pool. Returns name -> error text of the tasks that failed.

    Raises:
        ConfigError: ``jobs``, ``num_cpus``, ``num_gpus`` or ``retries`` out of range, or a request
            a local instance cannot satisfy.
        RayError: ray is not installed, or nothing answers at ``address``.
        KeyboardInterrupt: Ctrl-C, or :class:`oaprobe.workers.Interrupted` on SIGTERM; tasks cancelled.
    """
    _check_resources(jobs, num_cpus, num_gpus, retries)
    if not tasks:
        return {}
    ray = _import_ray()
    with _session(ray, address, jobs * num_cpus) as started_here:
        num_gpus = gpus_per_task(num_gpus, ray.cluster_resources())
        if started_here:
            _check_local_fits(ray, num_gpus)
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries)(_run_one)
        submit = _submitter(remote, work, (max(1, int(num_cpus)), num_gpus > 0), iter(tasks.items()))
        bar = tqdm(total=len(tasks), desc=f"{desc} (ray, {jobs} at once)", unit="task", disable=not progress)
        in_flight: dict[Any, str] = {}
        try:
            with _sigterm_as_interrupt():
                return _collect(ray, submit, in_flight, jobs, bar, label)
        except BaseException:
            _cancel(ray, in_flight)
            raise
        finally:
            bar.close()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Interrupted` as in the local pool, also when it lands in a
    Ray call (which re-raises any error of a signal handler as a plain KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        seen.append(signum)
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt as err:
        if seen and not isinstance(err, Interrupted):
            raise Interrupted(seen[0]) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def gpus_per_task(num_gpus: float | None, resources: dict[str, float]) -> float:
    """``num_gpus``, or for None one GPU per task when ``resources`` (Ray's) hold any, else 0.

    Example:
        >>> gpus_per_task(None, {"CPU": 16, "GPU": 2}), gpus_per_task(None, {"CPU": 16}), gpus_per_task(0.25, {})
        (1.0, 0.0, 0.25)
    """
    if num_gpus is not None:
        return float(num_gpus)
    return 1.0 if resources.get("GPU", 0) >= 1 else 0.0


def _check_resources(jobs: int, num_cpus: float, num_gpus: float | None, retries: int) -> None:
    """One-line errors for values Ray would reject later, or hang on."""
    if jobs < 1:
        raise ConfigError(f"jobs = {jobs}; expected >= 1")
    if not num_cpus > 0:
        raise ConfigError(f"num_cpus = {num_cpus}; expected > 0 (CPUs per task)")
    if num_gpus is not None and not (num_gpus >= 0 and (num_gpus <= 1 or float(num_gpus).is_integer())):
        raise ConfigError(f"num_gpus = {num_gpus}; expected 0, a fraction of one GPU, or a whole number")
    if retries < 0:
        raise ConfigError(f"retries = {retries}; expected >= 0")


def _run_one(work: Callable[..., Any], setup: tuple[int, bool], *args: Any) -> str | None:
    """Ray's side of one task: ``setup`` = (torch/OpenMP threads, GPUs asked for), then ``work(*args)``;
    an error comes back as text. A task that asked for no GPU sees none (Ray would leave it every GPU
    of its node, and ``device="auto"`` would train on one that another task holds)."""
    threads, gpus = setup
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by the engine's compute settings
    if not gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # read when CUDA first initialises in this worker
    import torch  # deferred: CUDA_VISIBLE_DEVICES is set above first

    torch.set_num_threads(threads)
    try:
        work(*args)
    except WorkerError as err:
        return str(err)
    except Exception as err:  # as text: an exception that does not unpickle cannot lose the task
        return f"{type(err).__name__}: {err}"
    return None


def _submitter(remote: Any, work: Callable[..., Any], setup: tuple[int, bool],
               queue: Iterator[tuple[str, tuple]]) -> Callable[[dict[Any, str]], None]:
    """A function that submits the next task of ``queue`` (if any) into ``in_flight``."""

    def submit(in_flight: dict[Any, str]) -> None:
        for name, args in queue:
            in_flight[remote.remote(work, setup, *args)] = name
            return

    return submit


def _collect(ray: ModuleType, submit: Callable[[dict[Any, str]], None], in_flight: dict[Any, str], jobs: int,
             bar: tqdm, label: Callable[[str], str]) -> dict[str, str]:
    """Keep ``jobs`` tasks in flight until all are done, ticking ``bar``; return name -> error text."""
    for _ in range(jobs):
        submit(in_flight)
    failures: dict[str, str] = {}
    while in_flight:
        done, _ = ray.wait(list(in_flight), num_returns=1, timeout=_POLL_S)
        for ref in done:
            name = in_flight.pop(ref)
            err = _error_of(ray, ref)
            if err is not None:
                failures[name] = err
            bar.set_postfix_str(label(name))
            bar.update()
            submit(in_flight)
    return failures


def _error_of(ray: ModuleType, ref: Any) -> str | None:
    """The task's error text: what :func:`_run_one` returned, or Ray's own error (worker died, cancelled)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"{type(err).__name__}: {first}"


def _cancel(ray: ModuleType, in_flight: dict[Any, str]) -> None:
    """Cancel the tasks in flight (killing their workers) and wait a little for Ray to confirm."""
    refs = list(in_flight)
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=_CANCEL_GRACE_S)


@contextlib.contextmanager
def _session(ray: ModuleType, address: str | None, num_cpus: float) -> Iterator[bool]:
    """Connect to Ray for the block, yielding whether a local instance was started: a fresh
    loopback-only one (shut down and its folder removed after), or the cluster at ``address``
    (disconnected after). A session this process already had is used as it is and left open.
    The caller's SIGTERM handler is restored after."""
    if ray.is_initialized():
        yield False
        return
    handler = signal.getsignal(signal.SIGTERM)  # ray.init installs its own
    local = address in (None, LOCAL)
    folder = tempfile.mkdtemp(prefix="oaprobe-ray-") if local else None  # short: Ray's socket paths must fit
    try:
        if local:
            _init_local(ray, num_cpus, folder)
        else:
            _init_cluster(ray, address)
        yield local
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if threading.current_thread() is threading.main_thread():  # handlers are set from there only
            signal.signal(signal.SIGTERM, handler if handler is not None else signal.SIG_DFL)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _init_local(ray: ModuleType, num_cpus: float, folder: str) -> None:
    """Start a local instance whose servers listen on 127.0.0.1 only, with ``num_cpus`` CPUs."""
    with _loopback_only():
        ray.init(address=LOCAL, num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=folder, log_to_driver=False, logging_level=logging.WARNING)


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local instance starts, keep its node address 127.0.0.1 (Ray replaces a loopback
    address by the routable one unless its cluster switch is off); its processes inherit this."""
    from ray._private import ray_constants  # deferred: an optional extra

    old_env, old_flag = os.environ.get(_CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(_CLUSTER_SWITCH, None)
        else:
            os.environ[_CLUSTER_SWITCH] = old_env


def _init_cluster(ray: ModuleType, address: str) -> None:
    """Join the cluster at ``address``, failing in seconds (not minutes of retries) when nothing answers.

    A head on this machine's loopback (``127.0.0.1:PORT``) is joined over loopback: Ray would
    otherwise dial the routable address, where a loopback-only head does not listen.
    """
    host_port = address.removeprefix("ray://")
    host = ""
    if address != "auto" and ":" in host_port:
        host, _, port = host_port.rpartition(":")
        host = host.strip("[]")
        try:
            socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S).close()
        except (OSError, ValueError) as err:
            raise RayError(f"ray address {address!r}: nothing answers there ({err}); expected a running "
                           "cluster's head (`ray start --head` prints its address)") from None
    loopback = host in ("127.0.0.1", "localhost", "::1")
    try:
        with _loopback_only() if loopback else contextlib.nullcontext():
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError) as err:
        hint = "" if os.environ.get("RAY_AUTH_MODE") else (
            "; a cluster with token authentication also needs RAY_AUTH_MODE=token (and its token in "
            "RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        raise RayError(f"ray address {address!r}: {str(err).strip().splitlines()[0]}{hint}") from None


def _check_local_fits(ray: ModuleType, num_gpus: float) -> None:
    """A task the local instance cannot place would wait forever: say so instead. (Its CPUs always
    fit; a cluster is not checked, as an autoscaler may add the nodes a task asks for.)"""
    have = ray.cluster_resources().get("GPU", 0)
    if num_gpus > have:
        raise ConfigError(f"num_gpus = {num_gpus:g} per task, but this machine has {have:g} GPU(s) for Ray; "
                          "expected at most that, or a cluster address")
