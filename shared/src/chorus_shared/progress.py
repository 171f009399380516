"""A progress bar for long loops that stays quiet in logs and can be switched off."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress"]

_NO_PROGRESS_ENV = "CHORUS_NO_PROGRESS"

T = TypeVar("T")


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Returns an iterator over ``iterable`` that draws a tqdm progress bar on stderr.

    ``CHORUS_NO_PROGRESS=1`` turns the bar off. When stderr is not a terminal (CI logs,
    redirected output) the bar still prints, but at most every five seconds.
    """
    from tqdm.auto import tqdm

    disabled = os.environ.get(_NO_PROGRESS_ENV, "").strip().lower() in {"1", "true", "yes"}
    interactive = sys.stderr is not None and sys.stderr.isatty()
    return iter(
        tqdm(
            iterable,
            total=total,
            desc=desc or None,
            file=sys.stderr,
            disable=disabled,
            mininterval=0.1 if interactive else 5.0,
            dynamic_ncols=interactive,
        )
    )
