"""The layers of DESIGN.md hold: the pure core (config, plan, pipeline, evaluation, grouping,
scorers' definitions, store, report and the command-line faces) loads neither torch nor Ray, and
nothing outside `engine/` loads Ray. Each check runs in a fresh interpreter, so that what an earlier
test imported cannot hide an import."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import raytaskaff

PURE_CORE = [
    "raytaskaff.atomic", "raytaskaff.config", "raytaskaff.sections", "raytaskaff.errors", "raytaskaff.settings", "raytaskaff.plan",
    "raytaskaff.preflight", "raytaskaff.pipeline", "raytaskaff.store", "raytaskaff.throughput",
    "raytaskaff.sweep", "raytaskaff.evaluate", "raytaskaff.group", "raytaskaff.names", "raytaskaff.estimate",
    "raytaskaff.data.domains", "raytaskaff.data.fields", "raytaskaff.data.shards", "raytaskaff.data.splits",
    "raytaskaff.data.synth", "raytaskaff.data.taskonomy", "raytaskaff.data.verify",
    "raytaskaff.evaluation.budget", "raytaskaff.evaluation.compare", "raytaskaff.evaluation.frontier",
    "raytaskaff.evaluation.partner", "raytaskaff.evaluation.ground_truth", "raytaskaff.evaluation.learning",
    "raytaskaff.evaluation.levels", "raytaskaff.evaluation.noise", "raytaskaff.evaluation.reference",
    "raytaskaff.evaluation.summary", "raytaskaff.evaluation.tables",
    "raytaskaff.grouping.affinity", "raytaskaff.grouping.files", "raytaskaff.grouping.hoa",
    "raytaskaff.grouping.networks", "raytaskaff.grouping.validation",
    "raytaskaff.report", "raytaskaff.report.document", "raytaskaff.report.figures", "raytaskaff.report.render",
    "raytaskaff.scorers", "raytaskaff.scorers.base", "raytaskaff.scorers.etap", "raytaskaff.scorers.gs",
    "raytaskaff.scorers.gt", "raytaskaff.scorers.ias", "raytaskaff.scorers.li", "raytaskaff.scorers.rsa",
    "raytaskaff.scorers.td", "raytaskaff.training.memory_table",
]


def _loaded(modules: list[str]) -> set[str]:
    """Which of torch and ray a fresh interpreter holds after importing `modules`."""
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            "print(' '.join(m for m in ('torch', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def _culprit(modules: list[str], heavy: str) -> str:
    """The first module that loads `heavy` on its own (for a readable failure)."""
    return next((m for m in modules if heavy in _loaded([m])), "none alone")


def test_the_pure_core_loads_neither_torch_nor_ray():
    loaded = _loaded(PURE_CORE)
    assert not loaded, {heavy: _culprit(PURE_CORE, heavy) for heavy in loaded}


def test_only_the_engine_loads_ray():
    everything = [m.name for m in pkgutil.walk_packages(raytaskaff.__path__, "raytaskaff.")]
    outside = [m for m in everything if not m.startswith("raytaskaff.engine.") and not m.endswith("__main__")]
    assert "raytaskaff.training.loop" in outside and "raytaskaff.models" in outside
    loaded = _loaded(outside)
    assert "ray" not in loaded, _culprit(outside, "ray")


def test_the_check_sees_an_import():
    """The probe itself: importing a module that loads torch is seen."""
    assert _loaded(["raytaskaff.models"]) == {"torch"}
    assert "ray" in _loaded(["raytaskaff.engine.cluster"])
