"""Fixtures of the report tests: a default-like report (planted_report.py) built once per module,
and a 40-task one built once per session."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_report import default_like, forty_like  # noqa: E402


@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    """(OUT, summary) of a default-like sweep's report (five tasks, nothing failed)."""
    out = tmp_path_factory.mktemp("default-like")
    return out, default_like(out)


@pytest.fixture(scope="session")
def forty_report(tmp_path_factory):
    """(OUT, summary, {task: planted cluster}) of a celeba-40-like report (forty_like)."""
    out = tmp_path_factory.mktemp("forty-like")
    return (out, *forty_like(out))
