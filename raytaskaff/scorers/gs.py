"""gs: gradient similarity (the "CS" baseline of TAG: Fifty et al., "Efficiently Identifying Task
Groupings for Multi-Task Learning", NeurIPS 2021).

value(t, p) = cos(g_t, g_p), the cosine between the two tasks' loss gradients on the shared
parameters of one multi-task network, every training step (or every `gradients_every`-th),
averaged over steps, then epochs, then seeds. Symmetric. Read from the instrumented all-task run
by default, or from the pairwise runs (`source: pairs`).

Limits: direction only (a tiny gradient counts as much as a large one); says nothing about
whether a step on p lowers t's loss, which is what `gt` measures.
"""

from __future__ import annotations

from raytaskaff.scorers.base import ProbeScorer, register


@register
class GradientSimilarity(ProbeScorer):
    name = "gs"
    probe = "gs"
