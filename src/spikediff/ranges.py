"""The valid range of every number a user can give, declared once.

A :class:`Range` is both the argparse ``type`` of a numeric option and the check of a numeric config
field, so the command line and the config schema refuse the same values with the same words, and a
test can try every option and field at its edges (``tests/test_validation.py`` walks the parser and
the schema; an option or field without a declared range fails it).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Whole numbers (``integer``) or finite reals from ``low`` to ``high`` (``None``: unbounded), each
    bound included unless ``open_low`` / ``open_high``."""

    integer: bool
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        """``a whole number >= 1``, ``a number in (0, 1)`` ..."""
        what = "a whole number" if self.integer else "a number"
        lo = None if self.low is None else f"{'>' if self.open_low else '>='} {self._show(self.low)}"
        hi = None if self.high is None else f"{'<' if self.open_high else '<='} {self._show(self.high)}"
        if lo and hi:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f"{what} in {left}{self._show(self.low)}, {self._show(self.high)}{right}"
        return f"{what} {lo or hi}" if lo or hi else what

    def _show(self, bound: float) -> str:
        return str(int(bound)) if self.integer else f"{bound:g}"

    def contains(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not self.integer and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.open_high else value > self.high))

    def parse(self, text: str) -> int | float:
        """``text`` as a value in the range; ``ValueError`` saying what was expected otherwise."""
        try:
            value: int | float = int(text) if self.integer else float(text)
        except ValueError:
            raise ValueError(f"expected {self.describe()}, got {text!r}") from None
        if not self.contains(value):
            raise ValueError(f"expected {self.describe()}, got {text}")
        return value

    def __call__(self, text: str) -> int | float:
        """As an argparse ``type``: its errors become argparse's one-line usage errors."""
        try:
            return self.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def check(self, value: object, name: str) -> None:
        """A config field's value: ``ValueError`` naming the field unless it is in the range."""
        if not self.contains(value):  # type: ignore[arg-type]
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")


COUNT = Range(True, 1)  # counts, step numbers, batch sizes: 0 is never a hidden default
NON_NEGATIVE_INT = Range(True, 0)
SEED = Range(True, 0, 2**63 - 1)  # torch.manual_seed's range
POSITIVE = Range(False, 0, open_low=True)  # durations, rates, scales that 0 would switch off
NON_NEGATIVE = Range(False, 0)
FRACTION = Range(False, 0, 1)
OPEN_FRACTION = Range(False, 0, 1, open_low=True, open_high=True)
