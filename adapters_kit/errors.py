"""The one exception type for mistakes a user can fix.

The CLI turns a :class:`UserError` into a single line on stderr and exit code 2; every other exception is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do about it."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training: a checkpoint was saved first (``checkpoint`` is its folder, or None without one)."""

    def __init__(self, checkpoint=None):
        super().__init__(f"interrupted; checkpoint saved in {checkpoint}" if checkpoint else "interrupted")
        self.checkpoint = checkpoint
