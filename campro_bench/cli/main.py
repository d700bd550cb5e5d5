"""Entry point of the ``campro-bench`` command.

Each sub-command lives in its own module exposing ``register(app)``; :data:`COMMAND_MODULES`
lists them. Any :class:`~campro_bench.errors.CamproError` is printed as one line and exits with
status 2; a usage error (unknown option, missing argument, bad value) prints the command's usage
and the problem and exits with status 2; a file-system error met while working (read-only or full
disk, no permission: :data:`FILE_SYSTEM_ERRNOS`) is one line naming the file, status 2; other
exceptions keep their traceback (they are bugs).
SIGTERM is handled like Ctrl-C, so an interrupted run cleans up its partial outputs (and stops
what it started) and ends with one line and status 130.
"""

from __future__ import annotations

import errno
import importlib
import signal
import sys
import threading

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import CamproError

COMMAND_MODULES: tuple[str, ...] = (
    "campro_bench.cli.list_cmd",
    "campro_bench.cli.models_cmd",
    "campro_bench.cli.protect_cmd",
    "campro_bench.cli.run_cmd",
    "campro_bench.cli.export_cmd",
    "campro_bench.cli.faces_cmd",
    "campro_bench.cli.train_cmd",
    "campro_bench.cli.train_lensless_cmd",
    "campro_bench.cli.train_bdq_cmd",
    "campro_bench.cli.train_sweep_cmd",
    "campro_bench.cli.train_screen_cmd",
    "campro_bench.cli.regress_cmd",
    "campro_bench.cli.audit_cmd",
    "campro_bench.cli.report_cmd",
)

app = typer.Typer(
    name="campro-bench",
    help="Benchmark harness for camera-level anti-facial recognition (CamPro, NDSS 2024).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_err = Console(stderr=True)


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)


_register_commands()


INTERRUPTED = 130
"""Exit status of a run stopped by SIGINT (Ctrl-C) or SIGTERM."""

_signals_received: list[str] = []


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM and SIGINT become an exception, so runs clean up their partial outputs (and stop
    what they started: Ray workers, a private Ray head) on the way out."""
    _signals_received.append(signal.Signals(signum).name)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of raising SystemExit when embedded."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, _terminate) for sig in handled} if in_main_thread else {}
    _signals_received.clear()
    try:
        status = _run(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if _signals_received or status == INTERRUPTED:  # typer turns KeyboardInterrupt into a silent 130
        _err.print(f"interrupted{' by ' + _signals_received[0] if _signals_received else ''}")
        return INTERRUPTED
    return status


def _usage_error_classes() -> tuple[type[BaseException], ...]:
    """Click's exception base of the click that typer uses (typer >= 0.20 vendors its own)."""
    import click

    return (click.exceptions.ClickException, *[c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"])


def _abort_classes() -> tuple[type[BaseException], ...]:
    import click

    return (click.exceptions.Abort, typer.Abort)


FILE_SYSTEM_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})
"""Errors of the machine's file system, not of campro-bench: a read-only or full disk, no permission."""


def file_system_message(exc: OSError) -> str:
    """One line for a file-system error met while working (a cache or output folder that cannot be written)."""
    place = exc.filename if exc.filename is not None else "a file"
    return (f"{place}: {(exc.strerror or str(exc)).lower()}; make the folder writable (or free space), or point "
            "--out / --cache-dir (CAMPRO_BENCH_CACHE) elsewhere")


def _run(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, standalone_mode=False)
    except CamproError as exc:
        # escaped: a message's own brackets ("[attack]", "[0, 1]") are text, not rich markup
        _err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except KeyboardInterrupt:
        return INTERRUPTED
    except OSError as exc:
        if exc.errno not in FILE_SYSTEM_ERRNOS:
            raise
        _err.print(f"[bold red]error:[/] {escape(file_system_message(exc))}", highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:  # usage errors arrive here in non-standalone mode: usage + message, status 2
        if isinstance(exc, _usage_error_classes()):
            exc.show()  # type: ignore[attr-defined]
            return int(getattr(exc, "exit_code", 2))
        if isinstance(exc, _abort_classes()):
            _err.print("aborted")
            return 1
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
