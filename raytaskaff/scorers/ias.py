"""ias: input attribution similarity (Song et al., "Deep Model Transferability from Attribution
Maps", NeurIPS 2019; as used by "It's a Match!", Azorin et al. 2023).

For each STL network and each of N test images, the InputXGradient attribution (captum) of the
encoder's output, summed, with respect to the input image; maps are averaged over the colour
channels and flattened. value(t, p) = mean over images of cos(map_t, map_p). Symmetric; the
diagonal would be 1. Per seed, then the mean over seeds. Default N = 2048 (`images`).

Limits: compares where two networks look, not what they compute; input x gradient is noisy and
grows with input intensity; the encoder of an STL network is specialised to its own task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from raytaskaff.scorers.base import Artifacts, Needs, Scorer, register


if TYPE_CHECKING:
    import torch

    from raytaskaff.models import MultiTaskNet


def attribution_maps(model: MultiTaskNet, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, H*W) float32 channel-averaged InputXGradient maps of the summed representation; the
    images (N, 3, H, W) are taken to the network's device batch by batch, the maps come back on CPU."""
    from captum.attr import InputXGradient  # with torch, once a model is read (a config check loads neither)

    model.eval()
    device = next(model.parameters()).device
    explainer = InputXGradient(lambda x: model.represent(x).flatten(1).sum(dim=1))
    maps = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].detach().to(device, copy=True).requires_grad_(True)
        maps.append(explainer.attribute(x).mean(dim=1).flatten(1).detach().cpu().numpy().astype(np.float32))
    return np.concatenate(maps)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of the cosine between rows of a and b (a zero row gives cosine 0)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    dots = np.einsum("ij,ij->i", a64, b64)
    return float(np.mean(np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 0.0)))


@register
class InputAttributionSimilarity(Scorer):
    name = "ias"
    needs = Needs(stl=True)

    def compute(self, artifacts: Artifacts, images: int = 2048) -> dict[tuple[str, str], float]:
        per_seed = {}
        for runs in artifacts.seeds:
            maps = artifacts.apply_to_models(attribution_maps, artifacts.stl_model_paths(runs), images)
            per_seed[runs.seed] = {(t, p): mean_cosine(maps[t], maps[p]) for t, p in artifacts.ordered_pairs()}
        self.details = {"images": images}
        return self.seed_mean(per_seed)
