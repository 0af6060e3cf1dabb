"""Handing freed heap memory back to the operating system between phases of a run.

glibc's allocator keeps memory a process has freed for its next allocations. A training step allocates and frees
the same activations every step, so that is what it should do; but the first steps, and each evaluation (other
batch sizes, no backward), leave the heap cut into free pieces the following steps do not fit into: the steps
grow the heap beside them while the pieces stay resident. ``malloc_trim(0)`` gives every wholly free page back
(the address space stays, so nothing moves); the next steps fault in only what they use. Measured with
``benchmarks/bench.py`` at the Trainer's settings on BBC: adapters_kit's peak RSS 1,697 MB before, 1,661 and
1,628 MB after (``benchmarks/README.md``, "Memory at identical settings"). Trimming changes no computed value: the
trained weights are bit-identical with and without it (``tests/test_memory.py``).

Each trim costs the next step the page faults of its activations once. Trimming after *every* step would pay them
every step, so the loop trims only where the memory's shape changes (see ``TRIM_FIRST_STEPS``).
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
