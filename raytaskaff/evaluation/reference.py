"""The reference study's best partners, to set beside a sweep's ground truth.

"It's a Match!" -- A Benchmark of Task Affinity Scores for Joint Learning (Azorin, Gallo,
Finamore, Rossi, Michiardi; arXiv 2301.02873), on Taskonomy: the best partner of each of its five
tasks in its pairwise MTL runs. Its relative gains are not recorded here (`GAINS` is empty and
the report says "not available"); only the partners are compared.
"""

from __future__ import annotations

from raytaskaff.evaluation.levels import best_partners

#: target -> the reference study's best partner.
BEST_PARTNER = {
    "segment_semantic": "normal",
    "keypoints2d": "normal",
    "edge_texture": "normal",
    "depth_zbuffer": "normal",
    "normal": "edge_texture",
}

#: target -> the relative gain (%) the study reports for that pair; empty: not available.
GAINS: dict[str, float] = {}

SOURCE = "Azorin et al., \"It's a Match!\", arXiv 2301.02873"


def reference_check(truth: dict[tuple[str, str], float], tasks: list[str]) -> list[dict]:
    """For each reference target in `tasks`: this ground truth's best partners and gain beside the
    study's partner (and gain, None when not available); agree is True when the study's partner is
    among the best here, False when not, None when this sweep cannot say (the partner is not one of
    its tasks, or the target is undecidable)."""
    targets = [t for t in BEST_PARTNER if t in tasks]
    best = best_partners({}, truth, targets)
    out = []
    for target in targets:
        partner, b = BEST_PARTNER[target], best[target]
        agree = None if partner not in tasks or b["undecidable"] or not b["best"] else partner in b["best"]
        out.append({"target": target, "best": b["best"], "best_gain": b["best_gain"],
                    "reference_partner": partner, "reference_gain": GAINS.get(target),
                    "gain_of_reference_partner": truth.get((target, partner)), "agree": agree})
    return out
