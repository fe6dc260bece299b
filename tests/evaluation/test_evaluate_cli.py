"""`python -m raytaskaff.evaluate`: the JSON schema, missing gains, and malformed input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from raytaskaff.evaluate import main

ROOT = str(Path(__file__).resolve().parents[2])
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
    assert list(result) == ["pearson", "spearman", "kendall", "ranking_kendall", "hits", "targets", "undecidable", "regret",
                            "coverage", "orientation", "warnings", "best_partner"]
    known = [("key points", "edges", 0.9, 4), ("key points", "depth", 0.1, 1), ("edges", "key points", 0.5, 2),
             ("depth", "key points", 0.2, -1), ("depth", "edges", 0.2, 3)]  # (edges, depth) has no gain
    x, y = [k[2] for k in known], [k[3] for k in known]
    assert result["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert result["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
    # edges knows one partner's gain only: nothing to choose between, so undecidable
    assert result["best_partner"]["edges"] == {"chosen": ["depth"], "best": ["key points"], "chosen_gain": None, "best_gain": 2.0,
                                               "hit": None, "undecidable": True}
    assert result["best_partner"]["depth"] == {"chosen": ["edges", "key points"], "best": ["edges"], "chosen_gain": 1.0, "best_gain": 3.0,
                                               "hit": True, "undecidable": False}
    assert (result["hits"], result["targets"], result["undecidable"]) == (2, 2, 1)
    assert result["coverage"] == {"pairs": 5, "pairs_known": 5, "targets": 3, "targets_known": 3}
    assert result["regret"] == pytest.approx((0 + 2) / 2)
    assert "| mine |" in (tmp_path / "out.md").read_text()


def test_partner_dependence_and_frontier_in_the_json(tmp_path):
    """The keys a sweep's evaluation.json has of these names, from the same functions: the ground
    truth's shares by hand (one-way ANOVA over its five known cells), and the frontier's raw points."""
    _files(tmp_path, mine=SCORE)
    assert main(["--ground-truth", str(tmp_path / "gt.csv"), "--score", f"mine={tmp_path / 'mine.csv'}",
                 "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert list(out) == ["headline", "warnings", "scorers", "intervals", "comparisons", "stability", "noise_ceiling", "reference",
                         "partner_dependence", "frontier"]
    truth = out["partner_dependence"]["ground_truth"]
    # gains 4, 1 (key points), 2 (edges), -1, 3 (depth): mean 1.8, total SS 14.8; row means 2.5, 2, 1:
    # SS 2 (0.7)² + 0.2² + 2 (0.8)² = 2.3; column means 3.5 (edges), 1 (depth), 0.5 (key points): SS 9.8
    assert truth["cells"] == 5 and truth["target_share"] == pytest.approx(2.3 / 14.8) and truth["partner_share"] == pytest.approx(9.8 / 14.8)
    assert truth["per_seed"]["seeds"] == 1 and truth["per_seed"]["target_share"]["std"] is None
    mine = out["partner_dependence"]["mine"]
    assert mine["cells"] == 6 and mine["target_bound"] is False
    frontier = out["frontier"]
    assert frontier["draws"] == 0 and frontier["ceiling"] is None  # no bootstrap asked, one seed: no ceiling
    (raw,) = frontier["predictors"]["mine"]["points"]
    assert (raw["k"], raw["cost"]) == (0, None) and raw["spearman"] == pytest.approx(out["scorers"]["mine"]["spearman"])
    assert frontier["predictors"]["mine (affine)"]["points"] == []


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
    result = json.loads((tmp_path / "o.json").read_text())["scorers"]["mine"]
    # two tasks: each target has one partner, nothing to choose, so no hit is counted
    assert (result["hits"], result["targets"], result["undecidable"]) == (0, 0, 2)
    assert result["spearman"] == pytest.approx(-1.0)


def _run(tmp_path, *args):
    """The command in tmp_path (file names relative to it), importing this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "raytaskaff.evaluate", *args], capture_output=True, text=True, cwd=tmp_path, env=env)


def test_a_byte_order_mark_is_read_like_any_csv(tmp_path):
    _files(tmp_path, gt="\ufeff" + GT, mine="\ufeff" + SCORE, plain=SCORE)
    assert main(["--ground-truth", str(tmp_path / "gt.csv"), "--score", f"mine={tmp_path / 'mine.csv'}",
                 "--score", f"plain={tmp_path / 'plain.csv'}", "--json", str(tmp_path / "out.json")]) == 0
    result = json.loads((tmp_path / "out.json").read_text())["scorers"]
    assert result["mine"]["spearman"] == result["plain"]["spearman"] and result["mine"]["coverage"]["pairs"] == 5


def test_a_constant_ground_truth_is_warned_about_and_decides_nothing(tmp_path):
    constant = "target,partner,value\n" + "".join(f"{t},{p},1\n" for t, p in (("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "a"), ("c", "b")))
    score = "target,partner,value\n" + "".join(f"{t},{p},{i}\n" for i, (t, p) in enumerate((("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "a"), ("c", "b"))))
    _files(tmp_path, gt=constant, mine=score)
    result = _run(tmp_path, "--ground-truth", "gt.csv", "--score", "mine=mine.csv", "--json", "out.json")
    assert result.returncode == 0
    assert result.stderr.splitlines() == ["warning: the ground truth is constant (every known gain is 1): it cannot rank pairs or "
                                          "partners, so no correlation or best-partner hit can be judged"]
    out = json.loads((tmp_path / "out.json").read_text())
    mine = out["scorers"]["mine"]
    assert (mine["hits"], mine["targets"], mine["undecidable"], mine["regret"], mine["spearman"]) == (0, 0, 3, None, None)
    assert out["warnings"] == result.stderr.removeprefix("warning: ").splitlines()
    assert out["headline"] == "the ground truth is constant: it ranks nothing, so no scorer can be judged."


def test_partial_coverage_is_reported_and_warned_about(tmp_path):
    full = "target,partner,value\n" + "".join(f"{t},{p},{i}\n" for i, (t, p) in enumerate((("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "a"), ("c", "b"))))
    _files(tmp_path, gt=full, one="target,partner,value\na,c,1\n")
    result = _run(tmp_path, "--ground-truth", "gt.csv", "--score", "one=one.csv", "--markdown", "out.md", "--json", "out.json")
    assert result.returncode == 0
    assert result.stderr.splitlines() == ["warning: score one covers 1/6 pairs and 1/3 targets of the ground truth: its numbers "
                                          "speak for those only"]
    one = json.loads((tmp_path / "out.json").read_text())["scorers"]["one"]
    assert one["coverage"] == {"pairs": 1, "pairs_known": 6, "targets": 1, "targets_known": 3}
    assert one["warnings"] == [result.stderr.removeprefix("warning: ").strip()]
    assert "| one | - | - | - | - | 1/1 | 0 | 0.000 | 1/6 | 1/3 |" in (tmp_path / "out.md").read_text()


SWEEP_AFFINITY = ("scorer,target,partner,value\n" + "".join(f"li,{t},{p},{v}\n" for t, p, v in (("a", "b", 3), ("a", "c", 1), ("b", "a", 2), ("b", "c", 0), ("c", "a", 1), ("c", "b", 2)))
                  + "".join(f"td,{t},{p},{v}\n" for t, p, v in (("a", "b", -1), ("a", "c", -2), ("b", "a", -1), ("b", "c", -3), ("c", "a", -2), ("c", "b", -3))))
GAINS_PER_SEED = "seed,target,partner,gain\n" + "".join(
    f"{s},{t},{p},{v + 0.3 * s * (-1) ** i}\n" for s in (0, 1, 2) for i, (t, p, v) in enumerate(
        (("a", "b", 4), ("a", "c", 1), ("b", "a", 2), ("b", "c", 3), ("c", "a", 1), ("c", "b", 2))))


def test_a_sweep_affinity_table_gives_each_name_its_rows_and_per_seed_files_add_seeds(tmp_path):
    _files(tmp_path, gt=GAINS_PER_SEED, affinity=SWEEP_AFFINITY,
           li_seeds="scorer,seed,target,partner,value\n" + "".join(f"li,{s},{t},{p},{v + s}\n" for s in (0, 1, 2) for t, p, v in
                                                                     (("a", "b", 3), ("a", "c", 1), ("b", "a", 2), ("b", "c", 0), ("c", "a", 1), ("c", "b", 2))))
    assert main(["--ground-truth", str(tmp_path / "gt.csv"), "--score", f"li={tmp_path / 'li_seeds.csv'}",
                 "--score", f"td={tmp_path / 'affinity.csv'}", "--bootstrap", "200", "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["scorers"]["td"]["coverage"]["pairs"] == 6 and out["noise_ceiling"]["seeds"] == 3
    (c,) = out["comparisons"]
    assert (c["a"], c["b"], c["seeds"], c["pairs"], c["replicates"]) == ("li", "td", 3, 6, 200)
    assert c["spearman_ci"] is not None and isinstance(c["spearman_significant"], bool)
    assert out["stability"]["li"]["seeds"] == 3 and out["stability"]["li"]["mean_spearman"] == pytest.approx(1.0)
    assert out["stability"]["td"]["seeds"] == 0
    assert out["headline"].endswith(".") and "li" in out["headline"]
    # the ground truth's partner dependence on each seed: seed 0 is the planted table (gains 4, 1 /
    # 2, 3 / 1, 2: mean 13/6, row means 2.5, 2.5, 1.5), seeds 1 and 2 add +-0.3 s alternately
    seeds = out["partner_dependence"]["ground_truth"]["per_seed"]
    assert seeds["seeds"] == 3 and list(seeds["tables"]) == ["0", "1", "2"]
    total = sum((v - 13 / 6) ** 2 for v in (4, 1, 2, 3, 1, 2))
    assert seeds["tables"]["0"]["target_share"] == pytest.approx((4 * (1 / 3) ** 2 + 2 * (2 / 3) ** 2) / total)
    shares = [seeds["tables"][s]["target_share"] for s in ("0", "1", "2")]
    assert seeds["target_share"]["std"] == pytest.approx(stats.tstd(shares)) and seeds["target_share"]["min"] == min(shares)
    # the mean table is seed 1's (the offsets average to seed 1's): so are its shares
    assert out["partner_dependence"]["ground_truth"]["target_share"] == pytest.approx(shares[1])
    # the frontier: 200 replicates ask for 10 draws, judged against the split-half ceiling
    assert out["frontier"]["draws"] == 10 and out["frontier"]["ceiling"] == out["noise_ceiling"]["split_half"]["spearman"]
    assert {"li", "td", "li (isotonic)", "combined (ridge)"} <= set(out["frontier"]["predictors"])


@pytest.mark.parametrize("args,message", [
    (["--score", "gs=affinity.csv"], "affinity.csv: no rows of scorer 'gs' (it holds li, td)"),
    (["--score", "li=bad_seed.csv"], "bad_seed.csv:2: seed 'x' is not an integer"),
    (["--score", "li=other_seed.csv"], "score li: seed 9 is not a seed of the ground truth (its seeds: 0, 1, 2)"),
])
def test_bad_per_scorer_or_per_seed_input_is_one_line_and_exit_2(tmp_path, args, message):
    _files(tmp_path, gt=GAINS_PER_SEED, affinity=SWEEP_AFFINITY, bad_seed="seed,target,partner,value\nx,a,b,1\n",
           other_seed="seed,target,partner,value\n9,a,b,1\n")
    result = _run(tmp_path, "--ground-truth", "gt.csv", *args)
    assert result.returncode == 2 and result.stderr.strip() == f"error: {message}", result.stderr


@pytest.mark.parametrize("option", ["--json", "--markdown"])
@pytest.mark.parametrize("where, message", [("folder", "is a folder; give the name of a file"),
                                            ("missing/out", "the folder {tmp}/missing does not exist")])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, option, where, message):
    _files(tmp_path, mine=SCORE)
    (tmp_path / "folder").mkdir()
    result = subprocess.run([sys.executable, "-m", "raytaskaff.evaluate", "--ground-truth", str(tmp_path / "gt.csv"),
                             "--score", f"mine={tmp_path / 'mine.csv'}", option, str(tmp_path / where)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and result.stderr == f"error: {option} {tmp_path / where}: {message.format(tmp=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "gt.csv", "mine.csv"]  # no stray file
    assert not list((tmp_path / "folder").iterdir())


def test_a_message_holding_a_line_break_stays_on_one_line(tmp_path):
    """A quoted task name may hold a line break; the message writes it as \\n."""
    _files(tmp_path, gt='target,partner,value\n"key\npoints",edges,1\nedges,"key\npoints",2\n',
           mine="target,partner,value\ndepth,edges,1\nedges,depth,2\n")
    result = subprocess.run([sys.executable, "-m", "raytaskaff.evaluate", "--ground-truth", str(tmp_path / "gt.csv"),
                             "--score", f"mine={tmp_path / 'mine.csv'}"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "error: score mine: task 'depth' is not in the ground truth (its tasks: edges, key\\npoints)\n"


def test_the_markdown_tables_as_printed(tmp_path, capsys):
    """The tables the command prints (rendered by the report's Markdown renderer): a partial score,
    an undecidable target, and a ground truth without seeds, whose ceiling row says so; then the
    report's partner-dependence section (one seed: no per-seed row)."""
    _files(tmp_path, mine=SCORE, part="target,partner,value\nkey points,edges,0.1\ndepth,edges,0.5\n")
    assert main(["--ground-truth", str(tmp_path / "gt.csv"), "--score", f"mine={tmp_path / 'mine.csv'}",
                 "--score", f"part={tmp_path / 'part.csv'}"]) == 0
    printed = capsys.readouterr().out
    assert printed[printed.index("| scorer |"):] == (
        "| scorer | Pearson | Spearman | Kendall | partner ranking | best partner hits | undecidable | regret | pairs scored | targets scored |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        "| mine | 0.668 | 0.667 | 0.527 | 1.000 | 2/2 | 1 | 1.000 | 5/5 | 3/3 |\n"
        "| part | -1.000 | -1.000 | -1.000 | - | 2/2 | 1 | 0.000 | 2/5 | 2/3 |\n"
        "| noise ceiling | not measured: the ground truth has one seed (give it a seed column) | | | | | | | | |\n"
        "\n"
        "| target | true best | mine | part |\n"
        "|---|---|---|---|\n"
        "| depth | edges (3.000) | edges, key points (1.000) | edges (3.000) |\n"
        "| edges | key points (2.000) undecidable | depth (-) | - (-) |\n"
        "| key points | edges (4.000) | edges (4.000) | edges (4.000) |\n"
        "\n"
        "| a | b | Spearman a - b | 95% CI | significant | hits a - b | 95% CI | significant |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| mine | part | 2.000 | - | - | 0 | - | - |\n"
        "\n"
        "## Partner dependence\n"
        "\n"
        "Share of each table's variance over its off-diagonal cells explained by the target alone (row means) and by the "
        "partner alone (column means), what only the pair explains (beyond target + partner), and the mean spread of a "
        "target's row over the spread of the row means. A scorer is flagged when the target alone explains at least 0.7 of "
        "it and more than of the ground truth: its value barely changes with the partner, so it cannot pick one. None is "
        "flagged.\n"
        "\n"
        "| table | target share | partner share | pair only | within / between spread | reading |\n"
        "|---|---|---|---|---|---|\n"
        "| ground_truth | 0.16 | 0.66 | 0.00 | 1.87 |  |\n"  # 2.3 / 14.8 and 9.8 / 14.8 (the JSON test)
        "| mine | 0.34 | 0.08 | 0.32 | 0.98 |  |\n"
        "| part | - | - | - | - |  |\n")  # two cells: too few to split
    assert printed.index("| scorer |") > 0 and printed.split("\n\n")[0].endswith(".")  # the headline first
