"""A private Ray head on this machine: started, reached and stopped by this tool alone.

``ray stop`` stops every Ray cluster of the machine and Ray's defaults (fixed ports, one shared
``/tmp/ray``, no authentication on a head started with ``ray start``) let other local processes
in. A :class:`PrivateRayHead` instead

* runs ``ray start --head --block`` in a session (and process group) of its own, with its own
  temp dir (inside a fresh ``0700`` folder), so nothing of another Ray cluster is shared or touched;
* listens on 127.0.0.1 only, on ports chosen free (the GCS port by Ray itself, the others by a
  bind to port 0): no fixed port that could clash with another head;
* has Ray's token authentication on (``RAY_AUTH_MODE=token``) with a random token that only this
  process, the head and the head's workers hold (environment variables, never printed or
  recorded), so a client without it is refused;
* is stopped by its process ids alone: SIGTERM to the ``ray start`` process (which stops the
  processes it started), then SIGKILL to whatever is left in its session (the raylet gives each
  worker a process group of its own, inside the session) and process group;
* dies with this process: the ``ray start`` process gets SIGTERM when its parent dies (Linux
  ``PR_SET_PDEATHSIG``), even after a SIGKILL of the driver, and Ray ties its own children to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import CamproError
from .io.atomic import process_alive

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Environment that keeps a single-machine Ray on the loopback address: Ray otherwise advertises
(and rewrites 127.0.0.1 to) the machine's own interface address."""

AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
"""The environment variables through which Ray reads its authentication mode and token."""

START_TIMEOUT_S = 300.0
"""How long ``ray start`` may take to bring the head up (a loaded machine is slow)."""

START_ATTEMPTS = 2
"""How many times a start that timed out is tried (see :meth:`PrivateRayHead.start`)."""

STOP_GRACE_S = 30.0
"""How long the head's processes get to exit on SIGTERM before the rest of its session is killed."""


def free_loopback_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


TEMP_PREFIX = "campro-ray-"
"""Temp dirs of private heads are ``/tmp/campro-ray-<driver pid>-<random>``: short, because Ray's
socket paths must fit 107 bytes, and named by their driver so a later start can remove the ones
whose driver was killed before it could (:func:`remove_stale_temp_dirs`)."""


def remove_stale_temp_dirs(root: Path = Path("/tmp")) -> list[Path]:
    """Remove this user's private-head temp dirs whose driver process is gone; return them."""
    removed = []
    for folder in root.glob(f"{TEMP_PREFIX}*-*"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(folder.name[len(TEMP_PREFIX):].split("-", 1)[0])
            if folder.is_dir() and folder.stat().st_uid == os.getuid() and not process_alive(pid):
                shutil.rmtree(folder)
                removed.append(folder)
    return removed


def _die_with_parent(parent: int) -> None:
    """In the child before exec: get SIGTERM when ``parent`` dies (Linux), or exit now if it
    already has. Elsewhere a no-op: the head is then stopped by :meth:`PrivateRayHead.stop` only."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def session_processes(sid: int) -> list[int]:
    """Process ids of session ``sid`` (Linux ``/proc``; elsewhere empty). Ray's raylet puts each
    worker in a process group of its own, but they stay in the head's session."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
            if int(fields[3]) == sid:
                members.append(int(stat.parent.name))
    return members


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` and of process group ``sid``."""
    for pid in session_processes(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signal.SIGKILL)


def _session_alive(sid: int, leader: int) -> bool:
    """Whether a process of session (and group) ``sid`` other than the reaped ``leader`` remains."""
    if any(pid != leader for pid in session_processes(sid)):
        return True
    try:
        os.killpg(sid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def require_token_auth() -> None:
    """Refuse to start a head without Ray's token authentication (Ray 2.52 and later)."""
    try:
        from ray._raylet import AuthenticationMode
    except ImportError as exc:
        try:
            import ray
        except ImportError:
            raise CamproError("--executor ray needs Ray, an optional extra: pip install -e \".[ray]\"") from exc
        raise CamproError(f"a private Ray head needs Ray's token authentication (Ray 2.52 or later); this is Ray "
                          f"{ray.__version__}: pip install -U \"ray>=2.52,<3\"") from exc
    if not hasattr(AuthenticationMode, "TOKEN"):
        raise CamproError("a private Ray head needs Ray's token authentication; this Ray has no token mode")


def reload_ray_auth() -> None:
    """Make an already imported Ray re-read :data:`AUTH_VARIABLES` (it caches mode and token)."""
    if "ray" not in sys.modules:
        return
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def ray_auth_env(token: str) -> Iterator[None]:
    """This process's Ray authenticates with ``token`` inside the block; the former values of
    :data:`AUTH_VARIABLES` come back afterwards."""
    saved = {name: os.environ.get(name) for name in AUTH_VARIABLES}
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    reload_ray_auth()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reload_ray_auth()


class PrivateRayHead:
    """One Ray head on 127.0.0.1 started by this process (see the module docstring).

    ``num_cpus``/``num_gpus``: what the head offers (``None``: what Ray detects). Start it from
    the main thread: the parent-death signal follows the thread that started it.
    """

    def __init__(self, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.token = secrets.token_hex(32)
        self.address: str | None = None
        self.temp_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the ``ray start`` process; also the id of the head's session and group."""
        return self._process.pid if self._process else None

    def environment(self) -> dict[str, str]:
        """Environment of the head's processes: this one's, loopback only, token authentication."""
        return {**os.environ, **LOOPBACK_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_USAGE_STATS_ENABLED": "0"}

    def command(self, ray_cli: Path, temp_dir: Path) -> list[str]:
        """The ``ray start`` command line: every port free or chosen by Ray, every listener on 127.0.0.1."""
        command = [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--port=0",
                   f"--ray-client-server-port={free_loopback_port()}", "--include-dashboard=false",
                   f"--dashboard-port={free_loopback_port()}", "--dashboard-host=127.0.0.1",
                   f"--dashboard-agent-listen-port={free_loopback_port()}", "--min-worker-port=0",
                   "--max-worker-port=0", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
        if self.num_cpus is not None:
            command.append(f"--num-cpus={self.num_cpus}")
        if self.num_gpus is not None:
            command.append(f"--num-gpus={self.num_gpus}")
        return command

    def start(self) -> str:
        """Start the head and return its ``127.0.0.1:PORT``; one error line if it does not come up.

        Ray gives the raylet a fixed 30 s to register with the GCS; on a heavily loaded machine
        that can pass, so a start that timed out is tried once more."""
        os.environ.update(LOOPBACK_ENV)  # before Ray is imported in this process, which reads it then
        require_token_auth()
        ray_cli = Path(sys.executable).with_name("ray")
        if not ray_cli.is_file():
            raise CamproError(f"--executor ray needs the 'ray' command beside {sys.executable}: "
                              "pip install -e \".[ray]\"")
        remove_stale_temp_dirs()
        for _ in range(START_ATTEMPTS):
            reason = self._try_start(ray_cli)
            if reason is None:
                assert self.address is not None
                return self.address
            if "timed out" not in reason:
                break
        raise CamproError(f"the private Ray head did not start: {reason}")

    def _try_start(self, ray_cli: Path) -> str | None:
        """One ``ray start``: None once the head is up, else why not (the head is then stopped)."""
        # private: mkdtemp makes a 0700 folder; Ray makes its own temp dir world-writable, so it
        # gets one inside (Ray's logs, sockets and session files live there)
        self.temp_dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir="/tmp"))
        ray_temp = self.temp_dir / "r"
        log = self.temp_dir / "ray-start.log"
        parent = os.getpid()
        with log.open("wb") as out:
            self._process = subprocess.Popen(
                self.command(ray_cli, ray_temp), env=self.environment(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: _die_with_parent(parent))
        marker = ray_temp / "ray_current_cluster"  # written by ray start once the head is up
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while not marker.is_file() or not marker.read_text().strip():
                exited = self._leader_exited()
                if exited or time.monotonic() > deadline:
                    lines = log.read_text(errors="replace").strip().splitlines()
                    self.stop()
                    return lines[-1] if lines else ("ray start ended without a word" if exited else
                                                    f"no head after {START_TIMEOUT_S:.0f} s")
                time.sleep(0.1)
            self.address = marker.read_text().strip()
        except BaseException:
            self.stop()
            raise
        return None

    def _leader_exited(self) -> bool:
        """Whether ``ray start`` has exited; it is not reaped, so its pid (the group id) stays ours."""
        assert self._process is not None
        if self._process.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the head by its process ids: SIGTERM to ``ray start`` (it stops what it started),
        after ``grace_s`` SIGKILL to every process left in its session; then remove its temp dir."""
        process = self._process
        if process is not None:
            try:
                if not self._leader_exited():
                    os.kill(process.pid, signal.SIGTERM)  # not send_signal: it would reap the leader
                deadline = time.monotonic() + grace_s
                while not self._leader_exited() and time.monotonic() < deadline:
                    time.sleep(0.1)
                _kill_session(process.pid)  # the leader is unreaped: its session and group are still ours
                process.wait()
                deadline = time.monotonic() + 10.0
                while _session_alive(process.pid, process.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                self._process = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None
        self.address = None


@contextlib.contextmanager
def private_ray_head(num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[PrivateRayHead]:
    """A started :class:`PrivateRayHead` whose token this process uses inside the block; stopped after."""
    head = PrivateRayHead(num_cpus, num_gpus)
    try:
        head.start()
        with ray_auth_env(head.token):
            yield head
    finally:
        head.stop()
