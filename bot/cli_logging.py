"""Where the command line's log records go: stderr, as `canrun: ...` sentences, or with timestamps under -v.

The modules log through `logging.getLogger(__name__)`, so canrun's own loggers are `bot.*`; -v opens those
to DEBUG and the libraries' to INFO (huggingface_hub's requests, for one).
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from collections.abc import Iterator

VERBOSE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def cli_logging(verbose: bool) -> Iterator[None]:
    """Log to stderr for the length of one command; what was there before is put back after it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(VERBOSE_FORMAT if verbose else "canrun: %(message)s"))
    root, ours = logging.getLogger(), logging.getLogger("bot")
    saved = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    ours.setLevel(logging.DEBUG if verbose else logging.NOTSET)
    logging.captureWarnings(True)  # a library's warnings.warn reads like the rest, not as file:line noise
    quiet_huggingface_hub()
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])


def quiet_huggingface_hub() -> None:
    """huggingface_hub gives its logger a handler of its own, so each of its warnings would print twice (once
    more through ours), and draws progress bars on stderr: the command line has its own words for both."""
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hub_logging

    hub_logger = hub_logging.get_logger()
    for handler in list(hub_logger.handlers):
        hub_logger.removeHandler(handler)
    hub_logger.propagate = True
    disable_progress_bars()
