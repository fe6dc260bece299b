"""rsa: representation similarity analysis (Dwivedi & Roig, "Representation Similarity Analysis
for Efficient Task Taxonomy & Transfer Learning", CVPR 2019).

For each STL network, the encoder's output (the shared representation) of the same N test images,
flattened; each feature is mean-centred across images; the representation dissimilarity matrix
RDM[i, j] = 1 - Pearson(features_i, features_j). value(t, p) = Spearman correlation of the upper
triangles (diagonal excluded) of RDM_t and RDM_p. Symmetric. Per seed, then the mean over seeds.
Default N = 500 (`images`, the reference's value).

Limits: compares the geometry of representations only; O(N^2) memory per task (N = 2048 gives 2.1
million pairs); Spearman of RDMs is insensitive to how features are scaled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import rankdata

from raytaskaff.scorers.base import Artifacts, Needs, Scorer, register

if TYPE_CHECKING:
    import torch

    from raytaskaff.models import MultiTaskNet


def representations(model: MultiTaskNet, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, F) flattened encoder outputs (eval mode) of (N, 3, H, W) images, taken to the network's
    device batch by batch."""
    import torch  # once a model is read (a config check loads no torch)

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return np.concatenate([model.represent(images[s:s + batch_size].to(device)).flatten(1).double().cpu().numpy()
                               for s in range(0, len(images), batch_size)])


def rdm(features: np.ndarray) -> np.ndarray:
    """(N, N) 1 - Pearson between images' mean-centred features (a constant image row: 1)."""
    centred = features - features.mean(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(centred)
    return 1.0 - np.nan_to_num(corr, nan=0.0)


def ranked_upper_triangle(model: MultiTaskNet, images: torch.Tensor) -> np.ndarray:
    """Ranks of the upper triangle of the network's RDM: comparing two of them with Pearson is
    the Spearman correlation of the RDMs (ranks computed once per network, not per pair)."""
    matrix = rdm(representations(model, images))
    return rankdata(matrix[np.triu_indices(len(matrix), k=1)]).astype(np.float32)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


@register
class RepresentationSimilarity(Scorer):
    name = "rsa"
    needs = Needs(stl=True)

    def compute(self, artifacts: Artifacts, images: int = 500) -> dict[tuple[str, str], float]:
        per_seed = {}
        for runs in artifacts.seeds:
            ranks = artifacts.apply_to_models(ranked_upper_triangle, artifacts.stl_model_paths(runs), images)
            per_seed[runs.seed] = {(t, p): pearson(ranks[t], ranks[p]) for t, p in artifacts.ordered_pairs()}
        self.details = {"images": images}
        return self.seed_mean(per_seed)
