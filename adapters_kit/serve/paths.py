"""Which folders a hot-load may read: run folders inside ``--runs-dir`` and nothing else."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from adapters_kit.runs.output import RUN_INFO, RUN_MARKER


def run_path(runs_dir: Path, given: str) -> Path:
    """``given`` (relative to ``runs_dir``) as a path inside it. ``PermissionError`` for an absolute path, a ``..``
    part, or a symlink leading outside; ``FileNotFoundError`` for a folder that is not there or not a run folder."""
    parts = PurePosixPath(given.replace("\\", "/"))
    if not given or parts.is_absolute() or given.startswith("~") or ".." in parts.parts or ":" in given:
        raise PermissionError(f"path {given!r} is refused: give a run folder relative to --runs-dir, without '..'")
    root = runs_dir.resolve()
    path = (root / parts).resolve()  # symlinks followed: where the bytes really are
    if path != root and root not in path.parents:
        raise PermissionError(f"path {given!r} leads outside --runs-dir and is refused")
    if not path.is_dir():
        raise FileNotFoundError(f"no folder {given!r} in --runs-dir")
    if not (path / RUN_MARKER).is_file() or not (path / RUN_INFO).is_file():
        raise FileNotFoundError(f"{given!r} is not a run folder ({RUN_MARKER} or {RUN_INFO} is missing)")
    return path
