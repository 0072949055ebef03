"""Who submitted a file and what it was called, as a person or a client gives them: stored with the file and
printed by `citykpi forms history`, so only printable text is taken (no line breaks, escapes or NULs that could
forge a line or colour a terminal)."""

import unicodedata
from pathlib import PurePosixPath

MAX_LENGTH = 200
# Control, format, surrogate, private-use and unassigned code points, and line or paragraph separators.
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def printable(text: str, what: str) -> str:
    """`text`, stripped, when it is printable and at most MAX_LENGTH characters; ValueError naming `what`."""
    text = unicodedata.normalize("NFC", text).strip()
    if len(text) > MAX_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_LENGTH} characters")
    bad = next((c for c in text if unicodedata.category(c) in _UNPRINTABLE), None)
    if bad is not None:
        raise ValueError(f"{what} holds the unprintable character U+{ord(bad):04X}")
    return text


def file_name(text: str) -> str:
    """The last part of a client's file name (never a path), printable; ValueError otherwise."""
    name = PurePosixPath(printable(text, "the file name").replace("\\", "/")).name
    if not name or name in (".", ".."):
        raise ValueError("the file name is empty")
    return name
