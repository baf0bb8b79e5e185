"""One-line error texts for CLIs and logs (no torch import: the bag player uses it)."""

from __future__ import annotations


def error_reason(err: BaseException, limit: int | None = None) -> str:
    """Return the first line of an exception's text (its type name when empty).

    It is cut to `limit` characters when given (for a library's message quoted inside our own).
    """
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:limit]


class ConversionError(ValueError):
    """Input data (a message, a camera's intrinsics) that cannot be converted; the message says why."""
