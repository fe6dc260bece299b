"""What a sweep prints when it ends: each stage's seconds and the report's path, aligned; and no
Tune banner pointing at Ray's session folder instead of OUT/tensorboard."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raytaskaff.report import closing_lines

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["data", "ray start", "training", "scorers", "evaluation", "grouping", "total"]


def test_closing_lines_align_names_and_seconds():
    lines = closing_lines({"data": 20.62, "ray start": 5.56, "training": 744.54, "total": 770.7}, "/out/report/index.html")
    assert lines == ["data:        20.6 s",
                     "ray start:    5.6 s",
                     "training:   744.5 s",
                     "total:      770.7 s",
                     "report:     /out/report/index.html"]


@pytest.mark.ray
def test_a_sweep_ends_with_its_stage_times_and_the_report_path(tmp_path, train_dataset):
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw.update({"data": {"kind": "shards", "path": str(train_dataset)}, "tasks": ["depth_zbuffer", "normal"], "seeds": [0],
                "scorers": {"td": raw["scorers"]["td"]}, "grouping": {"groups": [2], "seeds": [0]}, "out": str(tmp_path / "out")})
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AIR_NEW_OUTPUT")}  # a local Ray, Tune's default output
    done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    last = done.stdout.strip().splitlines()[-len(STAGES) - 1:]
    pattern = re.compile(r"^(?P<name>[a-z ]+): +(?P<seconds>\d+\.\d) s$")
    matched = [pattern.match(line) for line in last[:-1]]
    assert [m and m["name"] for m in matched] == STAGES, last
    assert len({len(line) for line in last[:-1]}) == 1  # the seconds right-aligned in one column
    report = tmp_path / "out" / "report" / "index.html"
    width = max(len(name) + 1 for name in STAGES)  # "evaluation:"
    assert last[-1] == "report:" + " " * (width - len("report:") + 2) + str(report) and report.is_file()
    seconds = {m["name"]: float(m["seconds"]) for m in matched}
    assert seconds["training"] > 0 and seconds["total"] >= max(v for k, v in seconds.items() if k != "total")
    said = done.stdout + done.stderr
    for banner in ("driver_artifacts", "To visualize your results with TensorBoard", "Configuration for experiment"):
        assert banner not in said
