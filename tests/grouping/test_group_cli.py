"""python -m raytaskaff.group: outputs on hand-made files, and one-line errors on bad ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raytaskaff.group import main

NETWORKS = """network,cost,task,val_loss,test_loss
all,1,a,3,3
all,1,b,3,3
all,1,c,3,3
ab,1,a,1,1.5
ab,1,b,1,1.5
c,1,c,1,2
half c,0.5,c,2,
"""


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_networks_json(tmp_path, capsys):
    (tmp_path / "nets.csv").write_text(NETWORKS)
    code, out, _ = run(["networks", "--results", str(tmp_path / "nets.csv"), "--budgets", "0.5,1,1.5,2",
                        "--json", str(tmp_path / "out.json")], capsys)
    assert code == 0 and "no set covers every task" in out
    budgets = json.loads((tmp_path / "out.json").read_text())["budgets"]
    assert [b["budget"] for b in budgets] == [0.5, 1, 1.5, 2]
    assert budgets[0]["networks"] == [] and budgets[0]["val_total"] is None
    assert (budgets[1]["networks"], budgets[1]["val_total"], budgets[1]["test_total"]) == (["all"], 9.0, 9.0)
    assert budgets[2]["networks"] == ["ab", "half c"] and budgets[2]["test_total"] is None  # half c has no test loss
    assert budgets[3]["networks"] == ["ab", "c"] and budgets[3]["val_total"] == 3.0 and budgets[3]["test_total"] == 5.0


def test_networks_hoa_adds_predicted_groups(tmp_path, capsys):
    rows = ["network,cost,task,val_loss,test_loss"]
    pair = {("a", "b"): (1.0, 2.0), ("a", "c"): (3.0, 4.0), ("b", "c"): (6.0, 8.0)}
    for t in "abc":
        rows.append(f"{t},1,{t},10,10")
    for (x, y), (lx, ly) in pair.items():
        rows += [f"{x}{y},1,{x},{lx},{lx}", f"{x}{y},1,{y},{ly},{ly}"]
    (tmp_path / "nets.csv").write_text("\n".join(rows) + "\n")
    code, out, _ = run(["networks", "--results", str(tmp_path / "nets.csv"), "--budgets", "1", "--hoa",
                        "--json", str(tmp_path / "out.json")], capsys)
    (b,) = json.loads((tmp_path / "out.json").read_text())["budgets"]
    assert code == 0 and b["networks"] == ["a+b+c"] and b["predicted"] == ["a+b+c"] and b["val_total"] == 12.0
    assert "(predicted)" in out


def test_affinity_from_a_sweep_table(tmp_path, capsys):
    rows = ["scorer,target,partner,value"]
    tasks = "abcd"
    for s, sign in (("good", 1), ("bad", -1)):
        for x in tasks:
            for y in tasks:
                if x != y:
                    same = (x in "ab") == (y in "ab")
                    rows.append(f"{s},{x},{y},{sign * (1 if same else -1)}")
    (tmp_path / "affinity.csv").write_text("\n".join(rows) + "\n")
    code, out, _ = run(["affinity", "--scores", str(tmp_path / "affinity.csv"), "--scorer", "good", "--max-groups", "2",
                        "--json", str(tmp_path / "g.json")], capsys)
    result = json.loads((tmp_path / "g.json").read_text())
    assert code == 0 and result["groups"] == [["a", "b"], ["c", "d"]] and result["objective"] == 1.0 and result["exact"]
    assert "a + b" in out


@pytest.mark.parametrize("content, args, message", [
    ("network,cost,task\nx,1,a\n", [], "missing column 'val_loss'"),
    ("", [], "empty file"),
    (NETWORKS.replace("ab,1,a,1,1.5", "ab,one,a,1,1.5"), [], "cost 'one' is not a number"),
    (NETWORKS.replace("ab,1,a,1,1.5", "ab,-1,a,1,1.5"), [], "cost '-1' is negative"),
    (NETWORKS.replace("ab,1,b,1,1.5", "ab,2,b,1,1.5"), [], "has cost 2 here and 1 above"),
    (NETWORKS.replace("ab,1,a,1,1.5", "ab,1,a,nan,1.5"), [], "not a finite number"),
    (NETWORKS.replace("ab,1,a,1,1.5", "ab,1,a,1"), [], "expected 5 fields, got 4"),
    (NETWORKS + "ab,1,a,1,1\n", [], "lists task 'a' twice"),
    ("network,cost,task,val_loss,test_loss\n", [], "no networks"),
    (NETWORKS, ["--budgets", "1,-2"], "'-2' must be a positive finite number"),
    (NETWORKS, ["--budgets", "1,inf"], "'inf' must be a positive finite number"),
    (NETWORKS, ["--budgets", "1,,2"], "'' is not a number"),
])
def test_bad_network_input(tmp_path, capsys, content, args, message):
    path = tmp_path / "nets.csv"
    path.write_text(content)
    argv = ["networks", "--results", str(path), "--budgets", "1", "--json", str(tmp_path / "out.json"), *args]
    code, out, err = run(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "out.json").exists() and out == ""


@pytest.mark.parametrize("content, args, message", [
    ("target,partner,value\na,b,1\n", [], "no affinity for target 'b', partner 'a'"),
    ("target,partner,value\na,b,x\nb,a,1\n", [], "value 'x' is not a number"),
    ("scorer,target,partner,value\ngs,a,b,1\ngs,b,a,1\n", ["--scorer", "gt"], "no rows of scorer 'gt'"),
    ("target,partner,value\na,b,1\nb,a,1\n", ["--scorer", "gt"], "no 'scorer' column"),
    ("target,partner,value\na,b,1\nb,a,1\n", ["--max-groups", "0"], "must be at least 1"),
    ("\x00\x01garbage", [], "NUL bytes"),
])
def test_bad_affinity_input(tmp_path, capsys, content, args, message):
    path = tmp_path / "scores.csv"
    path.write_text(content)
    argv = ["affinity", "--scores", str(path), "--max-groups", "2", "--json", str(tmp_path / "out.json"), *args]
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "out.json").exists()


def test_binary_garbage_and_missing_file(tmp_path, capsys):
    path = tmp_path / "x.csv"
    path.write_bytes(bytes(range(128, 256)))
    for command in (["networks", "--results", str(path), "--budgets", "1"], ["affinity", "--scores", str(path), "--max-groups", "1"]):
        code, _, err = run(command, capsys)
        assert code == 2 and ("UTF-8" in err or "cannot read" in err)
    code, _, err = run(["networks", "--results", str(tmp_path / "absent.csv"), "--budgets", "1"], capsys)
    assert code == 2 and "no such file" in err


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_any_text_is_read_or_refused_in_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_text("network,cost,task,val_loss,test_loss\n" + text, encoding="utf-8")
    from raytaskaff.evaluation.tables import TableError
    from raytaskaff.grouping.files import read_networks

    try:
        networks = read_networks(path)
    except TableError as e:
        assert "\n" not in str(e)
    else:
        assert networks and all(n.cost >= 0 for n in networks)


def test_module_entry_point(tmp_path):
    (tmp_path / "nets.csv").write_text(NETWORKS)
    done = subprocess.run([sys.executable, "-m", "raytaskaff.group", "networks", "--results", str(tmp_path / "nets.csv"),
                           "--budgets", "2"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "| 2 | ab, c | 2 | 3 | 5 |" in done.stdout


def test_a_table_of_several_scorers_names_them_without_scorer(tmp_path, capsys):
    path = tmp_path / "affinity.csv"
    path.write_text("scorer,target,partner,value\ngs,a,b,1\ngs,b,a,1\ntd,a,b,-1\ntd,b,a,-1\nli,a,b,2\nli,b,a,2\n")
    code, out, err = run(["affinity", "--scores", str(path), "--max-groups", "1"], capsys)
    assert code == 2 and not out
    assert err == f"error: {path}: holds the tables of 3 scorers (gs, li, td): choose one with --scorer NAME\n"
    code, out, _ = run(["affinity", "--scores", str(path), "--max-groups", "1", "--scorer", "td"], capsys)
    assert code == 0 and "a + b" in out


def test_a_byte_order_mark_is_accepted_by_both_readers(tmp_path, capsys):
    (tmp_path / "nets.csv").write_text("\ufeff" + NETWORKS, encoding="utf-8")
    (tmp_path / "plain.csv").write_text(NETWORKS)
    with_bom = run(["networks", "--results", str(tmp_path / "nets.csv"), "--budgets", "2"], capsys)
    assert with_bom[0] == 0 and with_bom == run(["networks", "--results", str(tmp_path / "plain.csv"), "--budgets", "2"], capsys)
    (tmp_path / "aff.csv").write_text("\ufefftarget,partner,value\na,b,1\nb,a,1\n", encoding="utf-8")
    code, out, err = run(["affinity", "--scores", str(tmp_path / "aff.csv"), "--max-groups", "1"], capsys)
    assert code == 0 and "a + b" in out and not err


def test_a_per_seed_table_is_grouped_on_its_mean(tmp_path, capsys):
    path = tmp_path / "gains_per_seed.csv"
    path.write_text("seed,target,partner,gain\n0,a,b,1\n0,b,a,3\n1,a,b,3\n1,b,a,1\n")
    code, out, _ = run(["affinity", "--scores", str(path), "--max-groups", "1", "--json", str(tmp_path / "o.json")], capsys)
    assert code == 0 and json.loads((tmp_path / "o.json").read_text())["objective"] == 2.0


@pytest.mark.parametrize("where, message", [("folder", "is a folder; give the name of a file"),
                                            ("missing/out.json", "the folder {tmp}/missing does not exist")])
def test_a_json_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, where, message):
    (tmp_path / "networks.csv").write_text(NETWORKS)
    (tmp_path / "folder").mkdir()
    code, out, err = run(["networks", "--results", str(tmp_path / "networks.csv"), "--budgets", "2",
                          "--json", str(tmp_path / where)], capsys)
    assert code == 2 and out == "" and err == f"error: --json {tmp_path / where}: {message.format(tmp=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "networks.csv"] and not list((tmp_path / "folder").iterdir())


def test_a_name_with_a_line_break_stays_on_one_line_in_an_error(tmp_path, capsys):
    (tmp_path / "scores.csv").write_text('scorer,target,partner,value\n"my\nscore",a,b,1\nother,a,b,2\n')
    code, _, err = run(["affinity", "--scores", str(tmp_path / "scores.csv"), "--max-groups", "2"], capsys)
    assert code == 2 and err.count("\n") == 1 and "(my\\nscore, other)" in err, err


# Task grouping at scale: bounded time beyond 10 tasks, and --hoa without listing every group.

def planted_networks_csv(n: int, seed: int = 0) -> str:
    """Single- and two-task networks (cost 1) of n tasks in groups of 4 whose pairs help each other."""
    import itertools

    import numpy as np

    rng = np.random.default_rng(seed)
    tasks = [f"task{i:02d}" for i in range(n)]
    label = rng.permutation(n) % max(1, n // 4)
    base = rng.uniform(0.8, 1.2, n)
    rows = ["network,cost,task,val_loss,test_loss"] + [f"{t},1,{t},{base[i]:.6f},{base[i]:.6f}" for i, t in enumerate(tasks)]
    for i, j in itertools.combinations(range(n), 2):
        for a, b in ((i, j), (j, i)):
            loss = base[a] * (1 - (rng.uniform(0.05, 0.2) if label[a] == label[b] else -rng.uniform(0, 0.15)))
            rows.append(f"{tasks[i]}+{tasks[j]},1,{tasks[a]},{loss:.6f},{1.02 * loss:.6f}")
    return "\n".join(rows) + "\n"


def check_selection(entry: dict, csv_text: str) -> None:
    """Every task served by a chosen network that holds it, within the budget, val_total its sum."""
    held, cost = {}, {}
    for line in csv_text.splitlines()[1:]:
        network, c, task, val, _ = line.split(",")
        held.setdefault(network, {})[task] = float(val)
        cost[network] = float(c)
    tasks = {t for losses in held.values() for t in losses}
    assert set(entry["serving"]) == tasks and set(entry["serving"].values()) <= set(entry["networks"])
    for task, network in entry["serving"].items():
        losses = held.get(network) or {}
        if network in entry["predicted"]:
            assert task in network.split("+")
        else:
            assert entry["val_total"] is not None and task in losses
    measured = [n for n in entry["networks"] if n not in entry["predicted"]]
    assert entry["cost"] <= entry["budget"] + 1e-9
    assert sum(cost[n] for n in measured) + len(entry["predicted"]) == pytest.approx(entry["cost"])
    assert entry["bound"] <= entry["val_total"] + 1e-9 and entry["gap"] >= 0
    assert entry["gap"] == pytest.approx((entry["val_total"] - entry["bound"]) / entry["val_total"], abs=1e-12)


def test_22_tasks_return_within_the_time_limit_with_a_gap(tmp_path):
    import time

    text = planted_networks_csv(22)
    (tmp_path / "nets.csv").write_text(text)  # 253 networks
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "raytaskaff.group", "networks", "--results", str(tmp_path / "nets.csv"),
                           "--budgets", "11,14,22", "--time-limit", "5", "--json", str(tmp_path / "out.json")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0 and time.perf_counter() - start < 30, done.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["time_limit"] == 5 and [b["budget"] for b in result["budgets"]] == [11, 14, 22]
    for entry in result["budgets"]:
        check_selection(entry, text)
        assert len(entry["networks"]) <= entry["budget"]
    assert result["budgets"][0]["networks"] and len(result["budgets"][0]["networks"]) == 11  # 22 tasks in 11 pairs
    assert "| bound | gap |" in done.stdout and "%" in done.stdout


def test_hoa_on_16_tasks_fits_in_2_gib(tmp_path):
    import os
    import resource

    text = planted_networks_csv(16, seed=1)
    (tmp_path / "nets.csv").write_text(text)

    def limit():  # the old listing of all 2^16 groups needed 64 GiB
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "raytaskaff.group", "networks", "--results", str(tmp_path / "nets.csv"),
                           "--budgets", "2,4,8", "--hoa", "--time-limit", "10", "--json", str(tmp_path / "out.json")],
                          capture_output=True, text=True, check=False, timeout=120, preexec_fn=limit, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out.json").read_text())
    for entry in result["budgets"]:
        check_selection(entry, text)
        assert entry["predicted"] and all(len(n.split("+")) >= 3 for n in entry["predicted"])
    four = result["budgets"][1]
    assert four["val_total"] <= 1.02 * four["bound"]  # 16 tasks in 4 planted groups: close to the optimum


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_bad_time_limit_is_refused(tmp_path, capsys, value):
    (tmp_path / "nets.csv").write_text(NETWORKS)
    code, out, err = run(["networks", "--results", str(tmp_path / "nets.csv"), "--budgets", "2", "--time-limit", value], capsys)
    assert code == 2 and out == "" and err.startswith("error: --time-limit: must be a positive number")
