"""``--config FILE`` and ``--set key=value`` for commands whose settings are a typed configuration.

Precedence, lowest first: the configuration's defaults, the TOML file, the command's own options
given on the command line (``--epochs 3``), then ``--set`` overrides. Every key is checked by
:func:`campro_bench.config.parse_config` (unknown keys with a "did you mean", types, ranges).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from ..config import apply_overrides, config_keys, parse_config, read_toml

C = TypeVar("C")


def config_file_option() -> Any:
    return typer.Option(None, "--config", help="TOML file of configuration keys (the options below, and more)")


def set_option() -> Any:
    return typer.Option([], "--set", "-s", help="override a configuration key, e.g. --set seed=1 (repeatable)")


def resolve_config(ctx: typer.Context, cls: type[C], what: str, config_file: Optional[Path],
                   overrides: list[str], option_names: dict[str, str] | None = None) -> C:
    """The configuration of a command from its defaults, ``--config``, given options and ``--set``.

    Args:
        ctx: the command's context (tells which options were given on the command line).
        cls: the configuration dataclass.
        what: the command, for messages (``"train isp"``).
        option_names: configuration key -> option parameter name where they differ.
    """
    data: dict[str, Any] = read_toml(config_file) if config_file is not None else {}
    names = option_names or {}
    for key in config_keys(cls):
        param = names.get(key, key)
        source = ctx.get_parameter_source(param) if param in ctx.params else None
        if source is not None and source.name == "COMMANDLINE":
            data[key] = ctx.params[param]
    return parse_config(cls, apply_overrides(data, overrides), what)
