"""An interrupted render never leaves a half-written report: both files are rendered whole before
either is written, and each is written to a temporary file beside it, then renamed over it."""

import pathlib
import shutil

import pytest

from raytaskaff.report import render
from raytaskaff.report.render import build_report


@pytest.fixture
def rendered(default_report, tmp_path):
    """A copy of the default-like sweep with its report, and that report's bytes."""
    out, _ = default_report
    shutil.copytree(out / "results", tmp_path / "results")
    build_report(tmp_path)
    report = tmp_path / "report"
    return tmp_path, {name: (report / name).read_bytes() for name in ("report.md", "index.html")}


def _left(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "report").iterdir())}


def test_a_render_that_fails_leaves_the_previous_report(rendered, monkeypatch):
    out, before = rendered

    def broken(*args, **kwargs):
        raise ValueError("the plot failed")

    monkeypatch.setattr(render, "cost_plot", broken)
    (out / "results" / "evaluation.json").write_text((out / "results" / "evaluation.json").read_text()
                                                     .replace('"sweep": "default-like"', '"sweep": "changed"'))
    with pytest.raises(ValueError, match="the plot failed"):
        build_report(out)
    assert _left(out) == before  # report.md too: nothing is written before both are rendered


def test_a_write_that_fails_midway_leaves_the_previous_file_whole(rendered, monkeypatch):
    out, before = rendered
    write_bytes = pathlib.Path.write_bytes

    def disk_full(self, data):
        if ".tmp-" in self.name and self.name.startswith("index.html"):
            write_bytes(self, data[: len(data) // 2])  # half of it reached the disk
            raise OSError(28, "No space left on device")
        return write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", disk_full)
    (out / "results" / "evaluation.json").write_text((out / "results" / "evaluation.json").read_text()
                                                     .replace('"sweep": "default-like"', '"sweep": "changed"'))
    with pytest.raises(OSError, match="No space left"):
        build_report(out)
    left = _left(out)
    assert set(left) == {"report.md", "index.html"}  # no temporary file left behind
    assert left["index.html"] == before["index.html"]
    assert "`changed`" in left["report.md"].decode()  # written whole before the HTML failed
