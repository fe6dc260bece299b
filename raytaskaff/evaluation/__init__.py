"""Ground truth over seeds, the four levels of evaluation, scorer-against-scorer comparisons (pure
numpy/scipy, no models)."""

from raytaskaff.evaluation.compare import compare_scorers, seed_stability
from raytaskaff.evaluation.ground_truth import gains_per_seed, ground_truth
from raytaskaff.evaluation.levels import evaluate_score
from raytaskaff.evaluation.noise import noise_ceiling
from raytaskaff.evaluation.summary import evaluate_all, headline

__all__ = ["compare_scorers", "evaluate_all", "evaluate_score", "gains_per_seed", "ground_truth", "headline", "noise_ceiling",
           "seed_stability"]
