"""The one exception type for mistakes a user can fix.

The CLI turns a :class:`UserError` into a single line on stderr and exit code 2; every other exception is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do about it."""


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type's name when it has none), cut at ``limit`` characters:
    the reason a one-line error quotes from a library's longer one."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


class TrainingInterrupted(Exception):
    """Ctrl-C during training: a checkpoint was saved first (``checkpoint`` is its folder, or None without one)."""

    def __init__(self, checkpoint=None):
        super().__init__(f"interrupted; checkpoint saved in {checkpoint}" if checkpoint else "interrupted")
        self.checkpoint = checkpoint
