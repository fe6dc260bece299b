"""A user's dataset end to end: a fake CelebA tree, one converter call, a reduced celeba-9 sweep
with a scorer from the user's own file (td left out, no taxonomy relates attributes)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ray = pytest.importorskip("ray")

from raytaskaff.config import load_config  # noqa: E402
from raytaskaff.data.shards import Manifest  # noqa: E402
from raytaskaff.engine.sweep import run_sweep  # noqa: E402
from raytaskaff.plan import plan  # noqa: E402
from raytaskaff.store import ResultStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fake_celeba  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # the forty-task test runs a fake CelebA end to end in the default suite
ROOT = Path(__file__).resolve().parents[2]

MINE = '''
from raytaskaff.scorers.base import Needs, Scorer


def mean_feature(model, images):
    return float(model.represent(images).detach().mean())


class FeatureGap(Scorer):
    """Minus the gap between the STL networks' mean representations on the test images."""

    needs = Needs(stl=True)

    def compute(self, artifacts, images: int = 4):
        runs = artifacts.seeds[0]
        means = artifacts.apply_to_models(mean_feature, artifacts.stl_model_paths(runs), images)
        return {(t, p): -abs(means[t] - means[p]) for t, p in artifacts.ordered_pairs()}
'''


def test_a_reduced_celeba_sweep(local_ray, tmp_path):
    celeba = tmp_path / "celeba"
    fake_celeba.write(celeba)
    data = tmp_path / "celeba-16"
    done = subprocess.run([sys.executable, "-m", "raytaskaff.data", "folder", "--images", str(celeba / "img_align_celeba"),
                           "--labels", str(celeba / "list_attr_celeba.txt"), "--split", str(celeba / "list_eval_partition.txt"),
                           "--group", str(celeba / "identity_CelebA.txt"), "--size", "16", "--out", str(data)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "skipped samples (2)" in done.stdout, done.stderr

    (tmp_path / "mine.py").write_text(MINE)
    raw = yaml.safe_load((ROOT / "sweeps" / "celeba-9.yaml").read_text())
    keep = ("Black_Hair", "Wearing_Hat", "No_Beard")
    raw.update(
        data={**raw["data"], "path": str(data), "reader": "object_store"},
        tasks=[t for t in raw["tasks"] if t["name"] in keep], seeds=[0],
        model={"preset": "tag_celeba", "widths": [8]},
        training={**raw["training"], "epochs": 2, "batch_size": 8, "eval_batch_size": 16},
        probes={"lookahead_every": 2, "gradients_every": 1},
        scorers={"td": {}, "ias": {"images": 4}, "rsa": {"images": 6}, "li": {}, "gt": {}, "mine": {"module": str(tmp_path / "mine.py")}},
        resources={"cpus_per_run": 1, "gpus_per_run": 0, "scorer_actors": 1}, grouping={"groups": [2]}, retries=0,
        out=str(tmp_path / "out"))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(tmp_path / "sweep.yaml")
    from raytaskaff.tasks import resolve

    fields = Manifest.load(data).all_fields()
    assert [resolve(n, config.task_specs, fields).positions for n in keep] == [(8,), (35,), (24,)]  # by name
    said = []
    summary = run_sweep(config, say=said.append)

    assert any(line.startswith("scorer td skipped: no taxonomy given") for line in said)
    runs = plan(config, Manifest.load(data).fingerprint)
    assert summary["runs"]["failed"] == {} and summary["runs"]["trained"] == len(runs) == 3 + 3 + 1 + 6
    assert set(summary["scorers"]) == {"ias", "rsa", "li", "gt", "mine"} and not summary["scorer_errors"]
    out = tmp_path / "out" / "results"
    affinity = pd.read_csv(out / "affinity.csv")
    assert set(affinity.scorer) == {"ias", "rsa", "li", "gt", "mine"} and len(affinity) == 5 * 6
    assert (affinity[affinity.scorer == "mine"].value <= 0).all()
    truth = pd.read_csv(out / "ground_truth.csv")
    assert set(truth.target) == set(keep) and len(truth) == 6
    store = ResultStore(str(tmp_path / "out" / "store"))
    stl = {r.tasks[0]: store.find(r.key) for r in runs if r.kind == "stl"}
    for name, result in stl.items():
        assert set(result.test_metrics[name]) == {"accuracy"} and 0 <= result.test_metrics[name]["accuracy"] <= 1
        assert result.test_losses[name] > 0
    grouping = pd.read_csv(out / "grouping.csv", keep_default_na=False)
    assert {"ground_truth", "mine", "li"} <= set(grouping.source)
