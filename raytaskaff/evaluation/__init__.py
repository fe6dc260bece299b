"""Ground truth over seeds and the four levels of evaluation (pure numpy/scipy, no models)."""

from raytaskaff.evaluation.ground_truth import gains_per_seed, ground_truth
from raytaskaff.evaluation.levels import evaluate_score
from raytaskaff.evaluation.noise import noise_ceiling

__all__ = ["evaluate_score", "gains_per_seed", "ground_truth", "noise_ceiling"]
