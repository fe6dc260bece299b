"""What the engine learns from the cluster: its capacity, and what pending runs wait for."""

from types import SimpleNamespace

import pytest

ray = pytest.importorskip("ray")

from raytaskaff.engine.cluster import WaitingReporter, capacity  # noqa: E402

pytestmark = pytest.mark.ray


def test_capacity_is_the_live_nodes(local_ray):
    found = capacity()
    assert [n.get("CPU") for n in found.nodes] == [2.0] and found.holds({"CPU": 2}) and not found.holds({"CPU": 3})


def test_pending_runs_that_cannot_start_are_reported_with_what_they_wait_for(local_ray):
    said = []
    reporter = WaitingReporter({"CPU": 64.0, "GPU": 0.5}, said.append, every=0.0)
    pending = [SimpleNamespace(status="PENDING") for _ in range(3)]
    reporter.on_step_end(0, pending)
    assert len(said) == 1 and said[0].startswith("waiting ") and "3 runs need 64 CPU, 0.5 GPU each; free now: " in said[0]
    assert "0 GPU" in said[0]
    reporter.on_step_end(1, pending + [SimpleNamespace(status="RUNNING")])  # something runs: nothing to say
    assert len(said) == 1
