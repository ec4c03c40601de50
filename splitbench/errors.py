"""The one exception type that the command line turns into a one-line message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SplitbenchError(Exception):
    """A problem with the user's input or environment, reported as one line with exit code 2.

    Raise it with a message that names the offending value and, where there is a
    short list of valid ones, lists them. Programming errors should stay ordinary
    exceptions so that they keep their traceback.
    """


def unknown_name(kind: str, name: str, valid: Iterable[str], where: str = "") -> SplitbenchError:
    """``unknown codec 'jpeg'; did you mean jpegxl, jpeg2000? valid codecs: …`` as one error.

    ``kind`` is the singular noun; ``where`` qualifies it (``" for dataset cifar10"``).
    """
    valid = list(dict.fromkeys(valid))
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return SplitbenchError(f"unknown {kind} {name!r}{where}; {hint}valid {kind}s: {', '.join(valid)}")
