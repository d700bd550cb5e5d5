"""Where independent units of work run: in this process, or as tasks on a Ray cluster.

A protocol splits its work into independent *cells* (E1: one dataset x model x image type
embedding job) and hands them to an :class:`Executor` as ``(function, args)`` calls. The
:class:`LocalExecutor` (the default; no extra service) runs them one after another in this process.
The :class:`RayExecutor` submits each as a Ray task with its CPU/GPU request, on a private Ray
head it starts (``--address local``; :mod:`campro_bench.ray_head`: loopback only, token
authentication, stopped by its process ids) or a running cluster (``--address auto|HOST:PORT``,
never stopped by this tool), and returns the
results in submission order, so the driver merges them into the same tables whatever order the
tasks finished in. Workers write into the cache folder they are given: on one machine or with a
cache folder on a shared filesystem, a later run, local or distributed, reads what they computed.

Ray is an optional dependency: ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from .errors import CamproError
from .ray_head import LOOPBACK_ENV, PrivateRayHead, private_ray_head, ray_auth_env

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Resources:
    """What one task asks a cluster for."""

    cpus: float = 1.0
    gpus: float = 0.0


class Executor(Protocol):
    """Runs independent calls and returns their results in submission order."""

    name: str

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, resources: Resources = Resources(),
            on_done: Callable[[int], None] | None = None) -> list[Any]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """In-process, one call after another: the default."""

    name = "local"

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, resources: Resources = Resources(),
            on_done: Callable[[int], None] | None = None) -> list[Any]:
        results = []
        for args in calls:
            results.append(fn(*args))
            if on_done:
                on_done(1)
        return results

    def describe(self) -> dict[str, Any]:
        return {"executor": "local"}

    def close(self) -> None:
        return None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise CamproError("--executor ray needs Ray, an optional extra: pip install -e \".[ray]\" "
                          "(or pip install 'campro-bench[ray]')") from exc
    return ray


def _run_with_threads(fn: Callable[..., Any], threads: int, *args: Any) -> Any:
    """Run ``fn`` in a Ray worker with as many torch threads as CPUs the task asked for."""
    import torch

    torch.set_num_threads(max(1, threads))
    return fn(*args)


def _is_loopback(address: str) -> bool:
    """Whether ``address`` names this machine's loopback interface (or a private local instance)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    return address == "local" or host in ("127.0.0.1", "localhost", "::1")


def _keep_ray_on_loopback() -> None:
    """Make this process's Ray resolve "this node" to 127.0.0.1 even if Ray was imported before
    :data:`LOOPBACK_ENV` was set: Ray otherwise rewrites 127.0.0.1 in a cluster address to the
    machine's interface address. Ray reads this module constant on every call."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


class RayExecutor:
    """Ray tasks with CPU/GPU requests, on ``address``: ``auto`` (a running cluster), ``HOST:PORT``,
    or ``local`` (a :class:`~campro_bench.ray_head.PrivateRayHead` started here: its own temp dir,
    session and token, stopped by :meth:`close`).

    SIGTERM keeps the handler it had before Ray connected (``ray.init`` installs its own, which
    exits from inside Ray), so the CLI's SIGTERM-as-Ctrl-C reaches the run, which then closes the
    executor: the driver disconnects, its tasks end, and a head started here is stopped."""

    name = "ray"

    def __init__(self, address: str = "auto") -> None:
        if _is_loopback(address):
            os.environ.update(LOOPBACK_ENV)  # before Ray is imported, for this process and its children
        self.ray = _import_ray()
        if _is_loopback(address):
            _keep_ray_on_loopback()
        self.address = address
        self._cleanup = contextlib.ExitStack()
        self._started_here = not self.ray.is_initialized()
        if not self._started_here:
            return
        try:
            if address == "local":
                head = PrivateRayHead()
                self._cleanup.callback(head.stop)
                address = head.start()
                self._cleanup.enter_context(ray_auth_env(head.token))
            self._connect(address)
        except BaseException:
            self._cleanup.close()
            raise

    def _connect(self, address: str) -> None:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
        # workers import campro_bench from the driver's environment; the same code everywhere
        options["runtime_env"] = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("CAMPRO_BENCH_")}}
        in_main_thread = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
        try:
            self.ray.init(address=address, **options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise CamproError(f"cannot connect to a Ray cluster at '{address}': {exc}") from exc
        finally:
            if in_main_thread and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        self._cleanup.callback(self._shutdown)

    def _shutdown(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, resources: Resources = Resources(),
            on_done: Callable[[int], None] | None = None) -> list[Any]:
        remote = self.ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus)(_run_with_threads)
        threads = max(1, int(resources.cpus))
        refs = [remote.remote(fn, threads, *args) for args in calls]
        position = {ref: n for n, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            # a bounded wait returns to Python often, so a signal's handler runs promptly
            done, pending = self.ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in done:
                results[position[ref]] = self.ray.get(ref)  # a task's exception is raised here
                if on_done:
                    on_done(1)
        return results

    def describe(self) -> dict[str, Any]:
        resources = self.ray.cluster_resources()
        return {"executor": "ray", "address": self.address, "ray_version": self.ray.__version__,
                "cluster_cpus": resources.get("CPU", 0.0), "cluster_gpus": resources.get("GPU", 0.0),
                "nodes": len(self.ray.nodes())}

    def close(self) -> None:
        """Disconnect (if this executor connected) and stop the head it started, if any."""
        self._cleanup.close()


@contextlib.contextmanager
def local_ray_head(num_cpus: int, num_gpus: int = 0) -> Iterator[str]:
    """A :class:`~campro_bench.ray_head.PrivateRayHead` with ``num_cpus`` CPUs; yields its
    ``127.0.0.1:PORT`` (this process holds its token inside the block) and stops it afterwards.
    Used by the tests and ``bench/scale.py``."""
    with private_ray_head(num_cpus, num_gpus) as head:
        assert head.address is not None
        yield head.address


def build_executor(name: str = "local", address: str | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``); ``address`` only applies to Ray."""
    if name == "local":
        if address:
            raise CamproError("--address applies to --executor ray only")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address or "auto")
    raise CamproError(f"unknown executor '{name}'; known executors: {', '.join(EXECUTORS)}")
