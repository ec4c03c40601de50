"""Comma-separated option values, as every command and job reads them: one set of rules and texts.

The command line splits ``--qp 30,35`` with :func:`split_numbers`; a job called from Python
with a tuple checks it with :func:`whole_numbers`; ``--codec bpg:30/35`` reads its values with
the same function. A value that names nothing, a non-number, NaN or infinity, and a number
below the option's minimum each fail in one line that names the option and quotes the text.
"""

from __future__ import annotations

from numbers import Integral

from splitbench.errors import SplitbenchError
from splitbench.finite import count_non_finite


def split_names(text: str, option: str | None = None) -> list[str]:
    """``a, b,c`` → ``["a", "b", "c"]`` (comma-separated option values).

    With ``option`` named, a value that names nothing (``,``) is refused rather than read
    as "not given": every command applies the same rule to every list option.
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    if option is not None and not names:
        raise SplitbenchError(f"{option} names nothing: got {text!r}")
    return names


def split_numbers(text: str | None, option: str, kind: type = float, minimum: float | None = None) -> list:
    """Comma-separated finite numbers of one ``kind`` (≥ ``minimum``); a bad one, or none, fails naming the option."""
    if text is None:
        return []
    noun = "integers" if kind is int else "numbers"
    numbers = [parse_number(part, kind) for part in split_names(text)]
    if not numbers or None in numbers:
        raise SplitbenchError(f"{option} takes comma-separated {noun}, got {text!r}")
    if count_non_finite(numbers):
        raise SplitbenchError(f"{option} takes finite {noun} (no NaN or infinity), got {text!r}")
    if minimum is not None and min(numbers) < minimum:
        raise SplitbenchError(f"{option} takes comma-separated {noun} ≥ {minimum:g}, got {text!r}")
    return numbers


def parse_number(text: str | float, kind: type) -> float | int | None:
    """``kind(text)``, or None where ``text`` is not one (``int('1e3')``, ``float('x')``)."""
    try:
        return kind(text)
    except (ValueError, TypeError, OverflowError):
        return None


def _text(numbers: tuple[int, ...]) -> str:
    return ",".join(str(n) for n in numbers)


def whole_numbers(values: tuple[int, ...] | str, option: str, minimum: int) -> tuple[int, ...]:
    """A list option of whole numbers ≥ ``minimum`` (text: comma-separated), duplicates dropped in order.

    The texts of :func:`split_numbers` for ``int``.
    """
    if isinstance(values, str):
        text, numbers = values, [_whole(part) for part in values.split(",") if part.strip()]
    else:
        text, numbers = _text(values), [_whole(n) if isinstance(n, Integral) and not isinstance(n, bool) else None for n in values]
    if not numbers or None in numbers:
        raise SplitbenchError(f"{option} takes comma-separated integers, got {text!r}")
    if min(numbers) < minimum:
        raise SplitbenchError(f"{option} takes comma-separated integers ≥ {minimum:g}, got {text!r}")
    return tuple(dict.fromkeys(numbers))


def _whole(text: str | Integral) -> int | None:
    try:
        return int(text)
    except (ValueError, OverflowError):
        return None
