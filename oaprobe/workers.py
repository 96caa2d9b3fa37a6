"""Work in single-threaded worker processes that never outlive the command that started them.

On Ctrl-C or SIGTERM the parent terminates its workers (SIGTERM, then SIGKILL), and a worker
whose parent vanished (SIGKILL, the OOM killer) exits by itself within a second. Workers are
single-threaded: on a small CPU two 1-thread processes beat one 2-thread process (ENV-NOTES),
and thread oversubscription is what makes CPUs crawl. A task's error comes back as text, so an
exception that does not unpickle cannot break the pool and fail every pending task.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from tqdm.auto import tqdm


class Interrupted(KeyboardInterrupt):
    """SIGTERM arrived while workers ran; handled like Ctrl-C (workers stopped, finished work kept)."""

    def __init__(self, signum: int = signal.SIGTERM):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Interrupted` in the main thread, as Ctrl-C raises
    KeyboardInterrupt, so the same cleanup stops the workers; the old handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; the workers' watchdog still applies
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Exit this worker as soon as ``parent_pid`` is no longer its parent (killed, e.g. by SIGKILL,
    with no chance to stop its pool); the run's last checkpoint stays and resumes next time."""
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def _init_worker(threads: int, parent_pid: int) -> None:
    """Set up a pool worker: exit with the parent, ``threads`` torch/OpenMP threads, Ctrl-C ignored."""
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # Ctrl-C goes to the parent, which terminates the pool; checkpoints stay.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch  # deferred: OMP_NUM_THREADS is set above first, and the parent stays torch-free

    torch.set_num_threads(threads)


class WorkerError(RuntimeError):
    """A worker's error as text: an exception that does not unpickle (e.g. one whose ``__init__``
    takes other arguments than its message) would break the whole pool and fail every pending run."""


def run_tasks(tasks: dict[str, tuple], work: Callable[..., Any], jobs: int, desc: str = "tasks",
              progress: bool = True, label: Callable[[str], str] = str) -> dict[str, str]:
    """Run ``work(*args)`` for every ``name -> args`` of ``tasks`` in ``jobs`` spawned workers, in order.

    ``work`` must be importable by name. Returns name -> error text of the tasks that failed;
    on any exception here (Ctrl-C, SIGTERM as :class:`Interrupted`) the workers are killed first.
    """
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads, os.getpid()))
    bar = tqdm(total=len(tasks), desc=f"{desc} ({jobs} workers)", unit="task", disable=not progress)
    try:
        with sigterm_as_interrupt():
            pending = {pool.submit(work, *args): name for name, args in tasks.items()}
            failures = _collect(pending, bar, label)
    except BaseException:
        _stop_pool(pool)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    return failures


def _collect(pending: dict[Future, str], bar: tqdm, label: Callable[[str], str]) -> dict[str, str]:
    """Wait for every future, ticking ``bar``; return name -> error text of the failed ones."""
    failures: dict[str, str] = {}
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            name = pending.pop(fut)
            err = fut.exception()
            if isinstance(err, WorkerError):
                failures[name] = str(err)
            elif err is not None:
                failures[name] = f"{type(err).__name__}: {err}"
            bar.set_postfix_str(label(name))
            bar.update()
    return failures


def _stop_pool(pool: ProcessPoolExecutor, grace: float = 5.0) -> None:
    """Cancel what has not started and terminate the workers (SIGTERM, then SIGKILL after ``grace`` s).

    ``shutdown`` alone lets running fits go on; their last checkpoints stay, so they resume next time.
    """
    workers = list((pool._processes or {}).values())  # shutdown() drops this mapping
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        proc.terminate()
    deadline = time.monotonic() + grace
    for proc in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
