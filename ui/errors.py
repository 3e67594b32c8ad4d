"""User-facing errors: one clear line, exit code 2, never a traceback."""


class UsageError(Exception):
    """Unusable input or arguments. The message says what was wrong and how to fix it."""

    exit_code = 2
