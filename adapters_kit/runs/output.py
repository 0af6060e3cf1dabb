"""The one rule for folders adapters-kit writes into (train, resume, sweep, export): never destroy what it did not
create.

A folder is one of ours only if it carries its kind's marker files, and then only the entries that kind writes
count as ours. Anything else that is not empty, hidden entries (``.git``, ``.env``) included, is never replaced,
with or without ``--overwrite``. The current folder, a folder above it, and a folder that holds the command's own
inputs (data, model, checkpoint) are refused outright. Checks run before any work and create nothing.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from adapters_kit.errors import UserError
from adapters_kit.runs.atomic import is_temporary, stale_temporaries

CHECKPOINT_PREFIX = "checkpoint-"
RUN_MARKER = "train_config.json"
RUN_INFO = "run_info.json"
MANIFEST_KEY = "files"
"""``run_info.json`` key listing the top-level entries ``save_run`` wrote."""


@dataclass(frozen=True)
class FolderKind:
    """What one kind of output folder looks like."""

    noun: str
    markers: tuple[str, ...] = ()
    """Files that make a folder one of this kind (all present). None: only an absent or empty folder is taken."""
    owned: tuple[str, ...] = ()
    """Patterns of the top-level entries a finished folder of this kind holds (when it lists none of its own)."""
    later: tuple[str, ...] = ()
    """Patterns of entries commands add to a finished folder afterwards (report PNGs, card, error lists)."""
    partial: tuple[str, ...] = ()
    """Patterns of what an unfinished one holds (a run's checkpoints), which ``--resume`` continues."""
    debris: tuple[str, ...] = ()
    """Patterns of what a killed write of its own leaves (a checkpoint's temporary folder): never counted, removed
    when the folder is claimed again."""


RUN = FolderKind(
    "run", markers=(RUN_MARKER,),
    # Runs written before run_info.json listed its files: the names save_run, the processors and PEFT write.
    owned=("*.safetensors", "*.json", "*.jsonl", "*.txt", "*.model", "chat_template.*", "logs"),
    later=(RUN_INFO, "README.md", "*.png", "errors_*.csv", f"{CHECKPOINT_PREFIX}*"),
    partial=(f"{CHECKPOINT_PREFIX}*",), debris=(f".{CHECKPOINT_PREFIX}*.tmp",))
SWEEP = FolderKind("sweep", markers=("sweep.json",), owned=("sweep.json", "best"))
EXPORT = FolderKind("export")


@dataclass(frozen=True)
class Found:
    """What an output folder holds now: ``absent``, ``empty``, ``finished``, ``unfinished`` or ``foreign``."""

    state: str
    foreign: tuple[str, ...] = ()


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _manifest(path: Path, kind: FolderKind) -> tuple[str, ...]:
    """The entries a finished folder says it holds, else the kind's patterns."""
    try:
        listed = json.loads((path / RUN_INFO).read_text()).get(MANIFEST_KEY)
    except (OSError, ValueError, AttributeError):
        listed = None
    if isinstance(listed, list) and all(isinstance(n, str) for n in listed):
        return tuple(listed)
    return kind.owned


def inspect(path: str | Path, kind: FolderKind) -> Found:
    """Classify ``path`` for ``kind`` without changing anything."""
    path = Path(path)
    if not path.exists():
        return Found("absent")
    names = sorted(p.name for p in path.iterdir() if not _is_debris(p.name, kind))
    if not names:
        return Found("empty")
    if kind.markers and all((path / m).is_file() for m in kind.markers):
        ours = _manifest(path, kind) + kind.markers + kind.later
        foreign = tuple(n for n in names if not _matches(n, ours))
        return Found("foreign", foreign) if foreign else Found("finished")
    if kind.partial and all(_matches(n, kind.partial) for n in names):
        return Found("unfinished")
    return Found("foreign", tuple(names))


def _is_debris(name: str, kind: FolderKind) -> bool:
    return is_temporary(name) or _matches(name, kind.debris)


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def input_paths(*specs: str | None) -> list[Path]:
    """Local paths named by data / model specs (``train=a.csv,test=b.csv`` parts too); names that are not paths
    (built-ins, Hub ids) are skipped."""
    found = []
    for spec in specs:
        for part in str(spec or "").split(","):
            candidate = part.partition("=")[2] if "=" in part else part
            if candidate.strip() and os.path.exists(candidate.strip()):
                found.append(Path(candidate.strip()).resolve())
    return found


def _check_location(path: Path, flag: str, inputs: list[Path]) -> None:
    resolved = path.resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; choose a folder path")
    if _inside(Path.cwd().resolve(), resolved):
        raise UserError(f"{flag} {path} is the current folder or holds it; adapters-kit never writes its results "
                        f"over it: choose a new folder such as runs/NAME")
    for held in inputs:
        if _inside(held, resolved):
            raise UserError(f"{flag} {path} holds this command's input {held}; choose a folder outside it")
    check_writable(resolved, flag)


def check_writable(path: Path, flag: str = "--output") -> None:
    """Fail before any work, not after training, when ``path`` cannot be written: the nearest existing folder at
    or above it must take a file. Creates nothing."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(f"{flag} {path} cannot be written ({e.strerror or e}); choose a writable folder") from None


def claim(path: str | Path, kind: FolderKind, *, overwrite: bool = False, resume: bool = False,
          continuing: bool = False, flag: str = "--output", inputs: list[Path] | tuple = ()) -> Found:
    """Check that ``path`` may receive a ``kind`` folder; returns what it holds. Raises a one-line UserError
    otherwise and changes nothing, except removing temporary siblings a killed write of this folder left.

    ``resume``: continue the unfinished run in ``path`` (it must hold checkpoints). ``continuing``: a run resumed
    from a checkpoint given elsewhere (``path`` may be absent, empty or unfinished, never finished).
    """
    path = Path(path)
    _check_location(path, flag, list(inputs))
    for stale in stale_temporaries(path.resolve()):  # a killed swap's leftovers: ours, never the user's
        shutil.rmtree(stale, ignore_errors=True)
    found = inspect(path, kind)
    if found.state == "foreign":
        shown = ", ".join(found.foreign[:5]) + (", ..." if len(found.foreign) > 5 else "")
        if not kind.markers:
            raise UserError(f"{flag} {path} already exists and is not empty; choose a new folder")
        what = "entries adapters-kit did not write" if \
            all((path / m).is_file() for m in kind.markers) else f"files that are not a {kind.noun}"
        raise UserError(f"{flag} {path} holds {what} ({shown}); adapters-kit never replaces them, with or without "
                        f"--overwrite: move them or choose a new folder")
    if found.state == "finished" and (resume or continuing):
        raise UserError(f"{flag} {path} holds a finished {kind.noun}; there is nothing to resume (resuming would "
                        f"replace it): choose a new --output")
    if found.state == "finished" and not overwrite:
        raise UserError(f"{flag} {path} already holds a {kind.noun}; pass --overwrite to replace it or choose "
                        f"another folder")
    if found.state == "unfinished" and not (resume or continuing or overwrite):
        raise UserError(f"{flag} {path} holds checkpoints of an unfinished {kind.noun}; pass --resume to continue "
                        f"it or --overwrite to start again")
    if resume and found.state != "unfinished":
        raise UserError(f"{flag} {path} holds no checkpoint to resume; run again without --resume")
    remove_debris(path, kind)
    return found


def _remove(path: Path, keep_if) -> None:
    for entry in sorted(path.iterdir()) if path.is_dir() else []:
        if not keep_if(entry.name):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def remove_debris(path: str | Path, kind: FolderKind) -> None:
    """Remove what killed writes of this kind left inside ``path`` (temporary files and folders), nothing else."""
    _remove(Path(path), lambda name: not _is_debris(name, kind))


def remove_partial(path: str | Path, kind: FolderKind) -> None:
    """Starting an unfinished folder again: remove its own partial entries (checkpoints), nothing else."""
    _remove(Path(path), lambda name: not (_matches(name, kind.partial) or _is_debris(name, kind)))
