"""Names that become partitions, table names and paths: validated before use."""

from __future__ import annotations

import re
from pathlib import Path

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UnsafeNameError(ValueError):
    """A dataset, teacher or recipe name that could escape its folder or break a table name."""


def validate_name(name: str, *, what: str = "dataset name") -> str:
    """Accept letters, digits, '_', '-', '.' (not first, no '..'), at most 64 characters."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise UnsafeNameError(
            f"{what} {name!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, with no '..' and no path separator"
        )
    return name


def path_inside(root: Path, *parts: str) -> Path:
    """Join validated parts under root and check the result cannot leave root (symlinks resolved)."""
    for part in parts:
        validate_name(part, what="path component")
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise UnsafeNameError(f"{path} is outside the storage root {root}")
    return path
