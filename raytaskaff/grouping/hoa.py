"""The higher-order approximation: losses of larger groups predicted from single and pairwise networks.

Standley et al., "Which Tasks Should Be Learned Together in Multi-task Learning?" (ICML 2020),
section 4.3: the loss of task a in a network trained on group G (three or more tasks) is predicted
as the mean of a's losses in the pairwise networks {a, b}, b in G \\ a. It needs the n(n-1)/2 pair
trainings only; the predicted candidates then go through the same network selection as measured
ones. Its limit: it assumes a task's partners act independently and additively.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from raytaskaff.grouping.affinity import GroupingError
from raytaskaff.grouping.networks import Network


def predict_group_losses(pairs: dict[frozenset, dict[str, float]], group: tuple[str, ...]) -> dict[str, float]:
    """{task: predicted loss} of the network trained on `group` (three or more tasks).

    pairs: {frozenset({a, b}): {a: loss, b: loss}} for every pair of the group.
    """
    out = {}
    for a in group:
        losses = []
        for b in group:
            if b != a:
                pair = pairs.get(frozenset((a, b)))
                if pair is None or a not in pair:
                    raise GroupingError(f"no pairwise network of {a!r} and {b!r} to predict {'+'.join(group)} from")
                losses.append(pair[a])
        out[a] = float(np.mean(losses))
    return out


def hoa_candidates(measured: list[Network], cost: float = 1.0) -> list[Network]:
    """Predicted networks for every group of three or more tasks that `measured` does not hold.

    The pairwise losses come from the measured two-task networks (of several with the same tasks,
    the costliest: the full-size one); test losses are predicted when every pair's is known.
    Predicted networks are named by their tasks joined with '+', and cost `cost` each.
    """
    pairs_val: dict[frozenset, Network] = {}
    for net in measured:
        if len(net.val) == 2:
            key = frozenset(net.val)
            if key not in pairs_val or net.cost > pairs_val[key].cost:
                pairs_val[key] = net
    tasks = tuple(dict.fromkeys(t for net in measured for t in net.val))
    held = {frozenset(net.val) for net in measured}
    val = {k: net.val for k, net in pairs_val.items()}
    test = {k: net.test for k, net in pairs_val.items() if None not in net.test.values()}
    out = []
    for size in range(3, len(tasks) + 1):
        for group in combinations(tasks, size):
            if frozenset(group) in held:
                continue
            try:
                predicted_test = predict_group_losses(test, group)
            except GroupingError:  # some pair's test loss is unknown
                predicted_test = dict.fromkeys(group)
            out.append(Network("+".join(group), cost, predict_group_losses(val, group), predicted_test))
    return out
