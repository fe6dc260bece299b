import pytest

from raytaskaff.training.loop import RunResult, RunSpec


def make_result(tasks, losses=None, inject=(), seed=0, wall=1.0, device=2.0, probes=None, variant=None, model_path=None):
    """A RunResult with the given test losses and probes, for scorers that read only those."""
    losses = losses or {t: 1.0 for t in tasks}
    return RunResult(spec=RunSpec(tuple(tasks), tuple(inject)), seed=seed, test_losses=losses, val_losses=losses,
                     test_metrics={}, best_epoch=0, epochs=1, history=[], wall_seconds=wall, cpu_seconds=device,
                     device="cpu", parameters=1, probes=probes or {}, probe_variant=variant, model_path=model_path)


@pytest.fixture
def result():
    return make_result
