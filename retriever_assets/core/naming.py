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


def path_inside(root: Path, *parts: str, root_kind: str = "storage root") -> Path:
    """Join validated parts under root and check the result cannot leave root (symlinks resolved).

    `root_kind` names the root in the error ("storage root", "data root"), so the message points at the right place.
    """
    for part in parts:
        validate_name(part, what="path component")
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        link = root.joinpath(*parts)
        raise UnsafeNameError(f"{link} resolves to {path}, which is outside the {root_kind} {root} "
                              "(a symlink pointing elsewhere is refused)")
    return path


def folder_bytes(path: Path | str) -> int:
    """Bytes of the files under a folder (0 when it does not exist)."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
