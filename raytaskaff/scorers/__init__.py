"""Task-affinity scorers: one module each, registered by name (see `base`)."""

from raytaskaff.scorers import etap, gs, gt, ias, li, rsa, td  # noqa: F401  (registration)
from raytaskaff.scorers.base import SCORERS, Artifacts, Needs, Score, Scorer, SeedRuns, cost_of, register, scorer

__all__ = ["SCORERS", "Artifacts", "Needs", "Score", "Scorer", "SeedRuns", "cost_of", "register", "scorer"]
