"""Progress bars for long jobs, silenced by --quiet or when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


@dataclass
class _State:
    quiet: bool = False


state = _State()


def progress(
    iterable: Iterable[T], desc: str, unit: str = "it", total: int | None = None, quiet: bool | None = None
) -> Iterator[T]:
    """Wrap `iterable` in a progress bar with rate and ETA (when `total` is known) on stderr."""
    silent = state.quiet if quiet is None else quiet
    # disable=None lets tqdm hide itself when stderr is not a TTY (CI logs, pipes).
    yield from tqdm(
        iterable, desc=desc, unit=unit, total=total, disable=True if silent else None, dynamic_ncols=True, smoothing=0.1
    )
