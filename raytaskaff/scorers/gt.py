"""gt: gradient transference, TAG's lookahead (Fifty et al., NeurIPS 2021).

value(t, p) = Z(p -> t) = (1 - L_t(theta - u_p) / L_t(theta)) / lr on one batch, every
`lookahead_every` steps of an instrumented multi-task run, averaged over those steps, epochs and
seeds; u_p is the update of a step on p alone. Positive: a step on p lowers t's loss. Asymmetric.

Three variants of the step: "faithful" is the reference code's step (plain SGD plus weight decay
on the encoder, neck excluded); "corrected" is the optimizer's real step (momentum, Adam moments)
on every shared parameter; "raw" is lr times the raw gradient on every shared parameter. `gt`
reads the run's `probes.variant` (reported in the score's details); `gt/faithful`, `gt/corrected`
and `gt/raw` read the variants the same run computed side by side (`probes.variants`), each judged
as a scorer of its own. All leave the live model, its optimizer and BatchNorm statistics untouched.

Limits: one-step, on-batch information; scaled by 1/lr, so values are comparable only within a
run; costs one encoder backward and one forward pass per task every `lookahead_every` steps.
"""

from __future__ import annotations

from raytaskaff.scorers.base import ProbeScorer, register_variants


@register_variants
class GradientTransference(ProbeScorer):
    name = "gt"
    probe = "gt"
