"""The private Ray head: loopback only, free ports, token authentication, its own temp dir and
session, stopped by its process ids. A head started outside the tool survives the tool's run; a
client without the token is refused; SIGTERM/SIGINT during a Ray run end it with one line and stop
the head and its workers; a SIGKILLed driver takes its head with it.

Every head here runs on 127.0.0.1 and is started and stopped by process id."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from campro_bench.ray_head import (AUTH_VARIABLES, LOOPBACK_ENV, TEMP_PREFIX, PrivateRayHead, free_loopback_port,
                                   private_ray_head, ray_auth_env, remove_stale_temp_dirs, session_processes)

REPO = Path(__file__).resolve().parents[1]
RAY_DEFAULT_PORTS = {6379, 8265, 10001, 52365}  # GCS, dashboard, Ray client server, dashboard agent
RAY_LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWE] \d+ \d+\] \S+\.cc:\d+: ")
"""A line of Ray's C++ log (``[date time level pid tid] file.cc:line: message``)."""


def _env(**extra: str) -> dict[str, str]:
    """This environment without any Ray token, with the repository importable and loopback Ray."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **LOOPBACK_ENV, **extra}


def test_head_command_is_loopback_only_on_free_ports_and_holds_no_token() -> None:
    head = PrivateRayHead(num_cpus=2, num_gpus=0)
    command = head.command(Path("ray"), Path("/tmp/x/r"))
    options = dict(arg.lstrip("-").split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)
    assert options["node-ip-address"] == "127.0.0.1" and options["dashboard-host"] == "127.0.0.1"
    assert options["port"] == "0" and options["include-dashboard"] == "false"  # GCS port chosen by Ray
    ports = {int(v) for k, v in options.items() if k.endswith("port")}
    assert not ports & RAY_DEFAULT_PORTS, "no fixed port that a head with Ray's defaults holds"
    assert "--block" in command and options["temp-dir"] == "/tmp/x/r" and options["num-cpus"] == "2"
    assert head.token not in " ".join(command)  # the token travels in the environment only
    env = head.environment()
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == head.token and len(head.token) == 64
    assert PrivateRayHead().token != head.token


def test_auth_environment_is_restored_after_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/nonexistent/token")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    with ray_auth_env("secret"):
        assert os.environ["RAY_AUTH_MODE"] == "token" and os.environ["RAY_AUTH_TOKEN"] == "secret"
        assert "RAY_AUTH_TOKEN_PATH" not in os.environ
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and os.environ["RAY_AUTH_TOKEN_PATH"] == "/nonexistent/token"
    assert "RAY_AUTH_TOKEN" not in os.environ


def test_stale_temp_dirs_of_dead_drivers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{TEMP_PREFIX}{int(dead.stdout)}-abc"
    live = tmp_path / f"{TEMP_PREFIX}{os.getpid()}-def"
    other = tmp_path / "ray-keep"
    for folder in (stale, live, other):
        (folder / "r").mkdir(parents=True)
    assert remove_stale_temp_dirs(tmp_path) == [stale]
    assert not stale.exists() and live.is_dir() and other.is_dir()


# ---- with real heads (Ray needed; each bounded in time) ----

CLIENT = """
import sys
from ray._raylet import GcsClient
try:
    GcsClient(address=sys.argv[1]).internal_kv_keys(b"", namespace=None, timeout=20)
except Exception as exc:
    print(type(exc).__name__)
    sys.exit(3)
print("connected")
"""


def _client(address: str, **extra: str) -> tuple[int, str]:
    """A separate process asks the GCS at ``address`` for its keys: (exit status, what it printed)."""
    done = subprocess.run([sys.executable, "-c", CLIENT, address], capture_output=True, text=True, timeout=120,
                          env=_env(**extra))
    return done.returncode, done.stdout.strip()


def _listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses (hex, as /proc/net shows them) of the TCP sockets ``pids`` listen on."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(fields[1].rsplit(":", 1)[0])
    return addresses


LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def _start_foreign_head(temp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Ray head as a user would start it (auth disabled), in its own session and temp dir."""
    ray_cli = Path(sys.executable).with_name("ray")
    free = [free_loopback_port() for _ in range(3)]
    command = [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--port=0",
               "--num-cpus=1", "--include-dashboard=false", f"--dashboard-port={free[0]}",
               f"--ray-client-server-port={free[1]}", f"--dashboard-agent-listen-port={free[2]}",
               "--disable-usage-stats", f"--temp-dir={temp}"]
    process = subprocess.Popen(command, env=_env(RAY_AUTH_MODE="disabled"), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker, deadline = temp / "ray_current_cluster", time.monotonic() + 300
    while not (marker.is_file() and marker.read_text().strip()):
        assert process.poll() is None and time.monotonic() < deadline, "the foreign head did not start"
        time.sleep(0.2)
    return process, marker.read_text().strip()


def _stop_by_pid(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the head's ``ray start``, then SIGKILL to whatever is left in its session."""
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    finally:
        for pid in session_processes(process.pid):
            os.kill(pid, signal.SIGKILL)
        process.wait()


def _wait_until_gone(sid: int, seconds: float = 30.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return session_processes(sid)


@pytest.mark.slow
def test_a_head_that_cannot_start_fails_with_one_line_and_leaves_nothing() -> None:
    pytest.importorskip("ray")
    from campro_bench.errors import CamproError

    head = PrivateRayHead(num_cpus=-1)  # ray start refuses a negative CPU count
    with pytest.raises(CamproError, match="the private Ray head did not start: .+") as caught:
        head.start()
    assert "\n" not in str(caught.value) and head.temp_dir is None and head.pid is None
    assert not list(Path("/tmp").glob(f"{TEMP_PREFIX}{os.getpid()}-*"))


@pytest.mark.slow
def test_private_head_refuses_clients_without_the_token_and_leaves_a_foreign_head_running() -> None:
    pytest.importorskip("ray")
    from campro_bench.executors import RayExecutor

    foreign_temp = Path(f"/tmp/{TEMP_PREFIX}test-{os.getpid()}")  # short: Ray's socket paths
    foreign, foreign_address = _start_foreign_head(foreign_temp)
    try:
        foreign_pids = set(session_processes(foreign.pid))
        assert len(foreign_pids) >= 4  # ray start, gcs_server, raylet, agents
        with private_ray_head(num_cpus=1) as head:
            assert head.address and head.temp_dir and head.pid
            sid = head.pid
            assert head.temp_dir.stat().st_mode & 0o777 == 0o700 and head.temp_dir.name.startswith(TEMP_PREFIX)
            assert os.environ["RAY_AUTH_TOKEN"] == head.token  # this process is the driver
            # a client without the token, or with a wrong one, is refused; with it, it gets in
            assert _client(head.address) == (3, "AuthenticationError")
            assert _client(head.address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64) == (3, "AuthenticationError")
            assert _client(head.address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=head.token) == (0, "connected")
            executor = RayExecutor(head.address)
            try:
                assert executor.map(pow, [(2, 3), (3, 2)]) == [8, 9]
                members = set(session_processes(sid))
                listening = _listening_addresses(members)
                assert listening and listening <= LOOPBACK_HEX, "every listener of the head is on loopback"
            finally:
                executor.close()
            temp_dir = head.temp_dir
        assert _wait_until_gone(sid, 5.0) == [], "nothing of the private head is left"
        assert not temp_dir.exists() and "RAY_AUTH_TOKEN" not in os.environ
        assert foreign_pids <= set(session_processes(foreign.pid)), "the foreign head's processes all survived"
        assert _client(foreign_address) == (0, "connected")  # and it still answers
    finally:
        _stop_by_pid(foreign)
        assert _wait_until_gone(foreign.pid) == []
        subprocess.run(["rm", "-rf", str(foreign_temp)], check=False)


DRIVER = """
import sys, time
from pathlib import Path
from campro_bench.cli import main as cli
from campro_bench.executors import build_executor


def sleep_task(marker: str) -> None:
    Path(marker).touch()
    time.sleep(300)


@cli.app.command("ray-sleep")
def ray_sleep(marker: str) -> None:
    executor = build_executor("ray", "local")  # a private head, stopped by close()
    try:
        executor.map(sleep_task, [(marker,)] * 2)
    finally:
        executor.close()


sys.exit(cli.main(["ray-sleep", sys.argv[1]]))
"""


def _head_of(driver: int) -> int:
    """The pid of the ``ray start`` process that ``driver`` started (its head's session id)."""
    children = subprocess.run(["ps", "--ppid", str(driver), "-o", "pid=,args="], capture_output=True, text=True)
    heads = [int(line.split()[0]) for line in children.stdout.splitlines() if " start --head" in line]
    assert len(heads) == 1, children.stdout
    return heads[0]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_signal_during_a_ray_run_stops_its_head_and_workers(sig: signal.Signals, tmp_path: Path) -> None:
    """A CLI command mapping two long tasks on ``--address local``: SIGTERM ends it with status 130,
    one line and no stack dump, and nothing of its head is left; after SIGKILL of the driver the
    head (which gets SIGTERM from the kernel when its parent dies) goes as well."""
    pytest.importorskip("ray")
    marker = tmp_path / "task-started"
    (tmp_path / "driver.py").write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(marker)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no task started"
            time.sleep(0.2)
        head = _head_of(driver.pid)
        workers = [pid for pid in session_processes(head) if os.getpgid(pid) != head]
        assert workers, "the tasks run in workers of the head's session (process groups of their own)"
        driver.send_signal(sig)
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert _wait_until_gone(head) == [], "every process of the head's session is gone, workers included"
    if sig == signal.SIGTERM:
        assert driver.returncode == 130
        # the tool's own output is the one interrupt line, last; Ray's core worker may log one line of
        # its own while the head goes (a task whose error it could no longer hand back), never a stack dump
        assert stderr.strip().splitlines()[-1] == "interrupted by SIGTERM", stderr
        tool_lines = [line for line in stderr.strip().splitlines() if not RAY_LOG_LINE.match(line)]
        assert tool_lines == ["interrupted by SIGTERM"], stderr
        assert not any(mark in stderr for mark in ("Traceback", "*** ", "Stack trace", "Aborted")), stderr
        assert not list(Path("/tmp").glob(f"{TEMP_PREFIX}{driver.pid}-*")), "its private temp dir is removed"
    else:
        assert driver.returncode == -signal.SIGKILL
