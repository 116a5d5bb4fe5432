"""The one base class of errors a user causes and can fix: its message is written for that user.

Every frontend answers them the same way, without a traceback: Discord privately (the command tree's on_error),
the command line on stderr.
"""

from __future__ import annotations


class CanrunUserError(Exception):
    """Bad input or a refused request; str(error) is one of canrun's sentences for the user (names as code spans)."""
