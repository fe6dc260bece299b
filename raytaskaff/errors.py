"""Errors the command-line faces turn into a one-line message and a non-zero exit."""


class RaytaskaffError(Exception):
    """Base class: an error whose message is fit to show a user on one line."""


def one_line(error: BaseException | str) -> str:
    """An error's message on one line: line breaks (a quoted task name may hold one) written as \\n."""
    return str(error).replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


class DataError(RaytaskaffError, ValueError):
    """Data on disk is missing, malformed, truncated or inconsistent with its manifest."""
