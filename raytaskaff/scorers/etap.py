"""etap: first-order transference (Ayman, Mukhopadhyay, Laszka, ETAP, ICLR 2026).

value(t, p) = (g_t . u_p) / (L_t lr): the first-order Taylor expansion of `gt`'s lookahead,
L_t(theta - u_p) ~ L_t(theta) - g_t . u_p, from the per-task gradients `gs` already has (no extra
forward pass); u_p = lr g_p for plain SGD, the optimizer's update in the corrected variant. Averaged
over steps, epochs and seeds. Asymmetric. `etap/faithful`, `etap/corrected` and `etap/raw` read the
variants computed side by side in the same run (`probes.variants`; see `gt`).

Limits: exact only for small steps; ETAP also calibrates the score into a gain predictor with a
few real MTL groups, which this raw score does not do.
"""

from __future__ import annotations

from raytaskaff.scorers.base import ProbeScorer, register_variants


@register_variants
class FirstOrderTransference(ProbeScorer):
    name = "etap"
    probe = "etap"
