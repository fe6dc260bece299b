"""gt: gradient transference, TAG's lookahead (Fifty et al., NeurIPS 2021).

value(t, p) = Z(p -> t) = (1 - L_t(theta - u_p) / L_t(theta)) / lr on one batch, every
`lookahead_every` steps of an instrumented multi-task run, averaged over those steps, epochs and
seeds; u_p is the update of a step on p alone. Positive: a step on p lowers t's loss. Asymmetric.

Two variants (chosen in the probe config, reported in the score's details): "faithful" is the
reference code's step (plain SGD plus weight decay on the encoder, neck excluded); "corrected" is
the optimizer's real step (momentum, Adam moments) on every shared parameter. Both leave the live
model, its optimizer and BatchNorm statistics untouched.

Limits: one-step, on-batch information; scaled by 1/lr, so values are comparable only within a
run; costs one encoder backward and one forward pass per task every `lookahead_every` steps.
"""

from __future__ import annotations

from raytaskaff.scorers.base import ProbeScorer, register


@register
class GradientTransference(ProbeScorer):
    name = "gt"
    probe = "gt"
