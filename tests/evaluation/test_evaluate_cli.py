"""`python -m raytaskaff.evaluate`: the JSON schema, missing gains, and malformed input."""

import json
import subprocess
import sys

import pytest
from scipy import stats

from raytaskaff.evaluate import main

GT = "target,partner,value\nkey points,edges,4\nkey points,depth,1\nedges,key points,2\nedges,depth,\ndepth,key points,-1\ndepth,edges,3\n"
SCORE = "target,partner,value\nkey points,edges,0.9\nkey points,depth,0.1\nedges,key points,0.5\nedges,depth,0.7\ndepth,key points,0.2\ndepth,edges,0.2\n"


def _files(tmp_path, gt=GT, **scores):
    (tmp_path / "gt.csv").write_text(gt)
    for name, text in scores.items():
        (tmp_path / f"{name}.csv").write_text(text)
    return tmp_path


def test_json_schema_and_values(tmp_path):
    _files(tmp_path, mine=SCORE)
    assert main(["--ground-truth", str(tmp_path / "gt.csv"), "--score", f"mine={tmp_path / 'mine.csv'}",
                 "--json", str(tmp_path / "out.json"), "--markdown", str(tmp_path / "out.md")]) == 0
    result = json.loads((tmp_path / "out.json").read_text())["scorers"]["mine"]
    assert list(result) == ["pearson", "spearman", "kendall", "ranking_kendall", "hits", "targets", "regret", "best_partner"]
    known = [("key points", "edges", 0.9, 4), ("key points", "depth", 0.1, 1), ("edges", "key points", 0.5, 2),
             ("depth", "key points", 0.2, -1), ("depth", "edges", 0.2, 3)]  # (edges, depth) has no gain
    x, y = [k[2] for k in known], [k[3] for k in known]
    assert result["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert result["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert result["best_partner"]["edges"] == {"chosen": ["depth"], "best": ["key points"], "chosen_gain": None, "best_gain": 2.0, "hit": None}
    assert result["best_partner"]["depth"] == {"chosen": ["edges", "key points"], "best": ["edges"], "chosen_gain": 1.0, "best_gain": 3.0, "hit": True}
    assert (result["hits"], result["targets"]) == (2, 2)
    assert result["regret"] == pytest.approx((0 + 2) / 2)
    assert "| mine |" in (tmp_path / "out.md").read_text()


@pytest.mark.parametrize("gt,score,message", [
    (GT, "target,partner\na,b\n", "missing column 'value'"),
    (GT, SCORE + "depth,edges,0.3\n", "duplicate pair (depth, edges)"),
    (GT, SCORE.replace("0.9", "high"), "value 'high' is not a number"),
    (GT, SCORE + "depth,colour,0.3\n", "task 'colour' is not in the ground truth"),
    (GT.replace("value", "gains"), SCORE, "missing column 'value'"),
    (GT + "depth,depth,1\n", SCORE, "target and partner are both 'depth'"),
    (GT, SCORE.replace("0.9", "inf"), "is not a finite number"),
])
def test_malformed_input_is_one_line_and_exit_2(tmp_path, gt, score, message):
    _files(tmp_path, gt=gt, mine=score)
    result = subprocess.run([sys.executable, "-m", "raytaskaff.evaluate", "--ground-truth", str(tmp_path / "gt.csv"),
                             "--score", f"mine={tmp_path / 'mine.csv'}", "--json", str(tmp_path / "out.json")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.json").exists()  # nothing half-written


def test_missing_file(tmp_path, capsys):
    _files(tmp_path, mine=SCORE)
    assert main(["--ground-truth", str(tmp_path / "nope.csv"), "--score", f"mine={tmp_path / 'mine.csv'}"]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err
    assert main(["--ground-truth", str(tmp_path / "gt.csv"), "--score", f"mine={tmp_path / 'x.csv'}"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["--ground-truth", str(tmp_path / "gt.csv"), "--score", "mine"])
    assert e.value.code == 2


def test_a_sweep_ground_truth_is_read_as_it_is(tmp_path):
    _files(tmp_path, gt="target,partner,gain,gain_std,seeds\nkey points,edges,4,1,3\nedges,key points,2,1,3\n",
           mine="target,partner,value\nkey points,edges,1\nedges,key points,2\n")
    assert main(["--ground-truth", str(tmp_path / "gt.csv"), "--score", f"mine={tmp_path / 'mine.csv'}", "--json", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["scorers"]["mine"]["hits"] == 2
