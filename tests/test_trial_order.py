"""The engine starts trials longest first (`estimate.longest_first`), as the wall-clock model
places them; no Ray."""

from pathlib import Path

from raytaskaff import estimate
from raytaskaff.config import load_config
from raytaskaff.plan import bundles, plan
from raytaskaff.settings import RunKind

DEFAULT = Path(__file__).resolve().parents[1] / "sweeps" / "default.yaml"


def _default():
    config = load_config(DEFAULT)
    views, px, _ = estimate.train_views(config)
    return config, bundles(plan(config, "content"), config.resources.bundle_limit), px, views


def test_trials_start_longest_first_by_the_cost_model_and_equal_ones_keep_plan_order():
    config, trials, px, views = _default()
    ordered = estimate.longest_first(config, trials, px, views)
    assert sorted(t.key for t in ordered) == sorted(t.key for t in trials)  # the same trials, reordered
    costs = estimate.run_costs(config, [r for t in trials for r in t.runs], px, views)
    seconds = [sum(costs[r.key][0] for r in t.runs) for t in ordered]
    assert seconds == sorted(seconds, reverse=True) and seconds[0] > seconds[-1]
    for a, b in zip(ordered, ordered[1:]):  # ties keep the plan's order
        if sum(costs[r.key][0] for r in a.runs) == sum(costs[r.key][0] for r in b.runs):
            assert trials.index(a) < trials.index(b)
    assert {r.kind for r in ordered[0].runs} == {RunKind.ALL}  # the probed all-task networks are the longest


def test_without_a_measured_rate_a_runs_heads_and_probes_order_it(monkeypatch):
    config, trials, px, views = _default()
    monkeypatch.setattr(estimate, "run_costs", lambda *a: None)
    ordered = estimate.longest_first(config, trials, px, views)
    work = [sum((len(r.tasks) + len(r.inject)) * (1.5 if r.probes else 1.0) for r in t.runs) for t in ordered]
    assert work == sorted(work, reverse=True)
    assert {r.kind for r in ordered[-1].runs} == {RunKind.STL}


def test_longest_first_is_never_slower_than_plan_order_on_the_default():
    config, trials, px, views = _default()
    costs = estimate.run_costs(config, [r for t in trials for r in t.runs], px, views)
    seconds = [sum(costs[r.key][0] for r in t.runs) for t in trials]
    for devices in (2, 3, 8):
        lpt = estimate.makespan(seconds, devices)
        assert lpt <= estimate.makespan(seconds, devices, in_order=True)
        assert lpt >= max(max(seconds), sum(seconds) / devices)  # no schedule beats these bounds
