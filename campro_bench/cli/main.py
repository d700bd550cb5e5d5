"""Entry point of the ``campro-bench`` command.

Each sub-command lives in its own module exposing ``register(app)``; :data:`COMMAND_MODULES`
lists them. Any :class:`~campro_bench.errors.CamproError` is printed as one line and exits with
status 2; other exceptions keep their traceback (they are bugs).
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from ..errors import CamproError

COMMAND_MODULES: tuple[str, ...] = (
    "campro_bench.cli.list_cmd",
    "campro_bench.cli.models_cmd",
    "campro_bench.cli.protect_cmd",
    "campro_bench.cli.run_cmd",
    "campro_bench.cli.export_cmd",
    "campro_bench.cli.faces_cmd",
    "campro_bench.cli.train_cmd",
    "campro_bench.cli.regress_cmd",
    "campro_bench.cli.audit_cmd",
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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of raising SystemExit when embedded."""
    try:
        result = app(args=argv, standalone_mode=False)
    except CamproError as exc:
        _err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except KeyboardInterrupt:
        _err.print("interrupted")
        return 130
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            _err.print("aborted")
            return 1
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
