"""Helpers for table-driven bad-input tests: a file-system snapshot, and the check every case makes.

A case is a command line that must fail with exit code 2, print exactly one line ``adapters-kit: error: ...``
holding an expected message, show no traceback, and leave every file under the watched folders as it was (no
file added, removed or changed; no folder created).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(*roots: str | Path) -> dict[str, str]:
    """Every entry under ``roots`` (hidden ones included) -> a digest of its content (``dir`` for folders)."""
    found: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            found[str(root)] = "absent"
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            found[dirpath] = "dir"
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    found[path] = "link:" + os.readlink(path)
                    continue
                with open(path, "rb") as fh:
                    found[path] = hashlib.sha1(fh.read()).hexdigest()
    return found


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Human-readable differences between two snapshots (empty when nothing changed)."""
    out = [f"added {p}" for p in sorted(set(after) - set(before))]
    out += [f"removed {p}" for p in sorted(set(before) - set(after))]
    out += [f"changed {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return out


def assert_one_line_error(main, argv: list[str], message: str, capsys, *watched: str | Path) -> str:
    """Run ``main(argv)``; assert exit 2, one ``adapters-kit: error:`` line holding ``message``, no traceback, and
    no change under ``watched``. Returns the line."""
    before = snapshot(*watched)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("adapters-kit: error: "), err
    assert "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert changes(before, snapshot(*watched)) == [], changes(before, snapshot(*watched))
    return lines[0]
