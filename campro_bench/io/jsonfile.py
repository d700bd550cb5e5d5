"""Read a small JSON file with one clear error line for a missing or malformed file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InvalidFileError, MissingFileError


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """The parsed content of ``path``; :class:`MissingFileError` / :class:`InvalidFileError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"{path}: not valid JSON ({exc})") from exc
