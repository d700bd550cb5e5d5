"""User-facing errors.

Every error a user can cause (bad input, missing file, unknown name, wrong checkpoint) is a
:class:`CamproError`. The CLI prints its message as one line and exits with status 2, so the
message must say what is wrong and, where it can, what to do about it.
"""

from __future__ import annotations


class CamproError(Exception):
    """An error caused by input the user can fix; its message is shown as-is."""


class UnknownNameError(CamproError, KeyError):
    """A registry lookup failed; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingFileError(CamproError, FileNotFoundError):
    """A required file (dataset, weights, parameters) is absent."""


class InvalidFileError(CamproError, ValueError):
    """A file exists but its content is not what was expected (corrupt, wrong format)."""


class CheckpointError(InvalidFileError):
    """A model checkpoint does not match the architecture it is loaded into."""


class EmptyDatasetError(CamproError):
    """A dataset was found but contains nothing usable."""
