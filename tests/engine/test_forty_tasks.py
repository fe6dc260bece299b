"""Forty tasks with forty-character names: a whole sweep (the fake CelebA through the folder
converter, TensorBoard on, bundles, the all-task run in a trial of its own) finishes, and every
folder it names after a run is short, unique and findable by `run_name`; the full task list is in
the run's record. The all-task run's name alone would be 40 x 41 characters."""

import dataclasses
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from raytaskaff.config import load_config  # noqa: E402
from raytaskaff.data.folder import convert  # noqa: E402
from raytaskaff.data.shards import Manifest  # noqa: E402
from raytaskaff.engine.sweep import run_sweep  # noqa: E402
from raytaskaff.names import NAME_LIMIT, run_name  # noqa: E402
from raytaskaff.plan import RunKind, plan  # noqa: E402
from raytaskaff.store import ResultStore  # noqa: E402

pytestmark = pytest.mark.ray
TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import fake_celeba  # noqa: E402


def test_a_forty_task_sweep_with_long_names_finishes(local_ray, tmp_path):
    celeba = tmp_path / "celeba"
    fake_celeba.write(celeba, n=60)
    convert(celeba / "img_align_celeba", celeba / "list_attr_celeba.txt", tmp_path / "data", 8,
            split=celeba / "list_eval_partition.txt", group=celeba / "identity_CelebA.txt")
    names = [f"{attribute}_".ljust(40, "x") for attribute in fake_celeba.ATTRIBUTES]
    assert len(names) == 40 and {len(n) for n in names} == {40}
    tasks = "".join(f"  - {{name: {n}, family: binary, field: attributes, index: {a}}}\n"
                    for n, a in zip(names, fake_celeba.ATTRIBUTES))
    # gs reads only the all-task network; 821 runs in bundles of 410: two trials, then the all-task
    # run in a trial of its own, named after it (the folder that overflowed)
    (tmp_path / "sweep.yaml").write_text(
        f"name: forty\ndata: {{kind: shards, path: {tmp_path / 'data'}, reader: object_store}}\ntasks:\n{tasks}"
        "seeds: [0]\nmodel: {preset: tag_celeba, widths: [4]}\n"
        "training: {epochs: 1, batch_size: 8, eval_batch_size: 64}\nprobes: {lookahead_every: 2, gradients_every: 2}\n"
        "scorers: {gs: {}}\nresources: {cpus_per_run: 1, scorer_actors: 1, bundle: 410}\n"
        f"tracking: {{tensorboard: true}}\nretries: 0\nbootstrap: 20\nout: {tmp_path / 'out'}\n")
    config = load_config(tmp_path / "sweep.yaml")
    said = []
    summary = run_sweep(config, say=said.append)

    runs = plan(config, Manifest.load(tmp_path / "data").fingerprint)
    assert len(runs) == 40 + 780 + 1
    assert summary["runs"]["failed"] == {} and summary["runs"]["trained"] == len(runs), said
    assert set(summary["scorers"]) == {"gs"}
    out = Path(config.out)
    boards = {p.name for p in (out / "tensorboard").iterdir()}
    assert boards == {run_name(r) for r in runs} and max(map(len, boards)) <= NAME_LIMIT
    [everything] = [r for r in runs if r.kind == RunKind.ALL]
    assert len(everything.label) > 40 * 40 and len(run_name(everything)) <= NAME_LIMIT
    assert len(list((out / "tensorboard" / run_name(everything)).glob("events.out.tfevents.*"))) == 1
    trials = [p.name for p in (out / "tune").glob("*/*") if p.is_dir()]
    assert len(trials) == 3 and sum(t.startswith(run_name(everything) + "_") for t in trials) == 1, trials
    record = ResultStore(str(out / "store")).record(everything.key)
    assert tuple(record["result"]["spec"]["tasks"]) == tuple(names)  # the full task list is in the record
    assert (out / "report" / "index.html").exists()
