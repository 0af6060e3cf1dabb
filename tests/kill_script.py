"""The ``adapters-kit`` command, sent a signal by itself at a chosen moment (the kill tests run it as a process).

    python -m tests.kill_script MOMENT SIGNAL ARGV...

MOMENT: ``training`` (after the third optimizer step), ``checkpoint`` (while the first checkpoint's optimizer
state is written: the file is left truncated, as a full disk or a power cut leaves it), ``swap-before`` / ``swap-after``
(just before / after the finished run folder is swapped into place). SIGNAL: ``SIGINT`` or ``SIGKILL``.
"""

from __future__ import annotations

import os
import signal
import sys


def _fire(sig: int) -> None:
    os.kill(os.getpid(), sig)


def _at_training(sig: int) -> None:
    from adapters_kit.train import loop

    real, steps = loop._Loop._trim_early, []

    def after_step(self):
        real(self)
        steps.append(1)
        if len(steps) == 3:
            _fire(sig)

    loop._Loop._trim_early = after_step


def _at_checkpoint(sig: int) -> None:
    import adapters_kit.train.resume as resume

    real = resume.torch.save

    def half_written(obj, path, *args, **kwargs):
        real(obj, path, *args, **kwargs)
        with open(path, "r+b") as fh:
            fh.truncate(10)
        _fire(sig)

    resume.torch.save = half_written


def _at_swap(sig: int, after: bool) -> None:
    from adapters_kit.runs import atomic

    real = atomic._exchange

    def swap(a, b):
        if not after:
            _fire(sig)
        done = real(a, b)
        _fire(sig)
        return done

    atomic._exchange = swap


def main() -> int:
    moment, signame, *argv = sys.argv[1:]
    sig = getattr(signal, signame)
    {"training": lambda: _at_training(sig), "checkpoint": lambda: _at_checkpoint(sig),
     "swap-before": lambda: _at_swap(sig, after=False), "swap-after": lambda: _at_swap(sig, after=True)}[moment]()
    from adapters_kit.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
