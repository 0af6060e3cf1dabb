"""Handing freed heap memory back to the operating system between phases of a run.

glibc's allocator keeps memory a process has freed for its next allocations. A training step allocates and frees
the same activations every step, so that is what it should do; but the first steps, and each evaluation (other
batch sizes, no backward), leave the heap cut into free pieces the following steps do not fit into: the steps
grow the heap beside them while the pieces stay resident. ``malloc_trim(0)`` gives every wholly free page back
(the address space stays, so nothing moves); the next steps fault in only what they use. Measured on the BBC
LoRA run of ``scripts/bench.py``: ~100 MB lower peak RSS, no slower (README, "Benchmarks").

Trimming after *every* step would give back the activations each step reuses, and fault them in again: about
1.7x slower here. So the loop trims only where the memory's shape changes (see ``TRIM_FIRST_STEPS``).
"""

from __future__ import annotations

import ctypes

TRIM_FIRST_STEPS = 2
"""Optimizer steps after which the training loop trims: by then every activation of a step has its place."""


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (AttributeError, OSError, TypeError):  # not glibc (macOS, musl, Windows): nothing to call
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> bool:
    """Give the heap's wholly free pages back to the OS; False where the C library cannot (not glibc)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
