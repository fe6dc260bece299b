"""Errors the command-line faces turn into a one-line message and a non-zero exit."""


class RaytaskaffError(Exception):
    """Base class: an error whose message is fit to show a user on one line."""


class DataError(RaytaskaffError, ValueError):
    """Data on disk is missing, malformed, truncated or inconsistent with its manifest."""
