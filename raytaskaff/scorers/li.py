"""li: label injection ("It's a Match!", Azorin et al., arXiv 2301.02873).

value(t, p) = 100 * (L_STL(t) - L_LI(t <- p)) / L_STL(t), test losses, where LI(t <- p) is the
STL network of t that also receives p's ground-truth label as extra input channels, in training
and at test time. Positive: knowing p's label helps predict t. Per seed (the STL and LI runs of a
seed share their initial weights and data order), then the mean over seeds. Asymmetric.

Limits: an oracle input is not a shared representation, so it measures how informative p's
label is about t, not whether learning p helps learning t; it needs one extra STL training per
ordered pair (n(n-1) for n tasks), more than the pairs of the ground truth.
"""

from __future__ import annotations

from raytaskaff.evaluation.ground_truth import relative_gain
from raytaskaff.scorers.base import Artifacts, Needs, Scorer, register


@register
class LabelInjection(Scorer):
    name = "li"
    needs = Needs(stl=True, li=True)

    def requirements(self, seeds: list[int] | None = None, **options) -> Needs:
        """STL and LI runs of `seeds` (default: every seed; LI runs are n(n-1) per seed)."""
        return Needs(stl=True, li=True, seeds=None if seeds is None else tuple(seeds))

    def compute(self, artifacts: Artifacts, seeds: list[int] | None = None) -> dict[tuple[str, str], float]:
        per_seed = {}
        for runs in artifacts.seeds:
            if seeds is not None and runs.seed not in seeds:
                continue
            table = {}
            for (target, partner), li in runs.li.items():
                if target in runs.stl:
                    table[target, partner] = relative_gain(runs.stl[target].test_losses[target], li.test_losses[target])
            if table:
                per_seed[runs.seed] = table
        return self.seed_mean(per_seed)
