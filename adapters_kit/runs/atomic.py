"""Atomic writes: a file or a folder appears complete under its name, or not at all.

Every writer of a run folder, checkpoint, export or sweep goes through here. A file is written to a hidden
temporary sibling and renamed over its name (``os.replace`` is atomic on one file system). A folder is built in a
hidden temporary sibling and swapped into place with one ``renameat2(RENAME_EXCHANGE)`` where Linux offers it, so
no instant exists at which the name is missing; elsewhere with two renames. Folders created on the way to a
destination are removed again when the write fails, so a failed command leaves no empty ``new/deep/`` behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that infer the format from it work); it
    replaces ``path`` only if the block finishes, and is removed otherwise."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; returns ``path``."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj: Any, **dumps: Any) -> Path:
    """Write ``obj`` as indented JSON atomically; returns ``path``."""
    return write_text(path, json.dumps(obj, indent=2, **dumps) + "\n")


def missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, outermost first."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing[::-1]


def remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this command created, innermost first, where they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    try:
        renameat2 = ctypes.CDLL(libc_name, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(a))


def temp_prefix(final: Path) -> str:
    """The name prefix of ``final``'s temporary siblings (hidden, so a half-built folder never looks finished)."""
    return f".{final.name}.tmp-"


_TEMPORARY = re.compile(r"^\..+\.tmp-[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?$")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of the temporary names this module makes (left behind only by a killed write)."""
    return bool(_TEMPORARY.match(name))


def stale_temporaries(final: Path) -> list[Path]:
    """Temporary folders a killed :func:`atomic_dir` of ``final`` left beside it (exactly the names it makes)."""
    if not final.parent.is_dir():
        return []
    return [p for p in final.parent.iterdir() if p.name.startswith(temp_prefix(final)) and is_temporary(p.name)
            and p.is_dir() and not p.is_symlink()]


@contextmanager
def atomic_dir(directory: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``directory`` only if the block finishes.

    The caller decides beforehand whether an existing ``directory`` may be replaced (:mod:`adapters_kit.runs.output`);
    what was there is removed only after the new folder is in place. Folders created above ``directory`` are
    removed again if the block fails.
    """
    final = Path(directory).resolve()
    created = missing_parents(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
    try:
        yield tmp
        if not final.exists():
            os.replace(tmp, final)
        elif not _exchange(tmp, final):
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            os.replace(old / final.name, tmp)
            old.rmdir()
        created = []
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        remove_if_empty(created)
