"""gs: gradient similarity (the "CS" baseline of TAG: Fifty et al., "Efficiently Identifying Task
Groupings for Multi-Task Learning", NeurIPS 2021).

value(t, p) = cos(g_t, g_p), the cosine between the two tasks' loss gradients on the shared
parameters of one multi-task network, every training step (or every `gradients_every`-th),
averaged over steps, then epochs, then seeds. Symmetric. Read from the instrumented all-task run
by default, or from the pairwise runs (`source: pairs`).

`parameters`: "all" (default) takes every shared parameter (encoder, neck, batch-norm weights and
biases); "kernels" takes what TAG's code takes, the encoder's convolution and linear kernel
weights alone (`training.probes.kernel_mask`). Both are recorded by every instrumented run, so the
option changes no run and no key; a run stored before "kernels" was recorded has no such probe
and the scorer says so.

Limits: direction only (a tiny gradient counts as much as a large one); says nothing about
whether a step on p lowers t's loss, which is what `gt` measures.
"""

from __future__ import annotations

from typing import Literal

from raytaskaff.scorers.base import Artifacts, ProbeScorer, probe_affinities, register

#: The probe each `parameters` choice reads.
PROBES = {"all": "gs", "kernels": "gs_kernels"}


@register
class GradientSimilarity(ProbeScorer):
    name = "gs"
    probe = "gs"

    def compute(self, artifacts: Artifacts, source: Literal["all", "pairs"] = "all",
                parameters: Literal["all", "kernels"] = "all") -> dict[tuple[str, str], float]:
        per_seed, variants = probe_affinities(artifacts, PROBES[parameters], source)
        self.details = {"source": source, "parameters": parameters, "variant": sorted(v for v in variants if v)}
        return self.seed_mean(per_seed)
