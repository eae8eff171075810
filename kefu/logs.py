"""Logging set-up, done once by the CLI."""

from __future__ import annotations

import logging
import sys


def configure_logging(verbosity: int = 0) -> None:
    """-q → errors only, default → warnings, -v → info, -vv → debug; messages go to stderr."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(max(-1, min(verbosity, 2)), logging.DEBUG)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_kefu", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbosity > 0 else "%(levelname)s: %(message)s")
    )
    handler._kefu = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("jieba", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
