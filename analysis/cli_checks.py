"""Checks of ``python -m analysis``'s options, run by argparse before any file is read.

A bad value is one line on stderr and exit status 2, as every other user error of the project:
argparse's own usage block would bury the reason, and ``float()`` alone lets ``nan``, ``inf``
and out-of-range numbers through, after which every comparison with them is silently false.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from training.config.settings import in_interval


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (subcommands inherit it through ``add_subparsers``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def number_in(low: float, high: float | None, what: str, *, low_open: bool = False,
              high_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite float in [low, high] (``high=None``: no upper bound; ends open on request)."""
    left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
    expected = f"expected {what}, a finite number in {left}{low:g}, {'inf' if high is None else f'{high:g}'}{right}"

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not in_interval(value, low, high, low_open=low_open, high_open=high_open):
            raise argparse.ArgumentTypeError(f"{expected}, not {text!r}")
        return value

    return convert


accuracy = number_in(0.0, 1.0, "an accuracy")
accuracy_drop = number_in(0.0, 1.0, "an accuracy difference")
margin = number_in(0.0, 1.0, "an accuracy margin", high_open=True)
think_tokens = number_in(0.0, None, "a mean number of think tokens")
reference_tokens = number_in(0.0, None, "a number of think tokens", low_open=True)
