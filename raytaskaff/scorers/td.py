"""td: taxonomical distance (Zamir et al., "Taskonomy: Disentangling Task Transfer Learning", CVPR 2018).

value(t, p) = -d(t, p), the path length between t and p in a task taxonomy: tasks close in the
taxonomy are expected to help each other. Symmetric; costs nothing to compute.

The taxonomy comes from the sweep config, as distances ({"a": {"b": 3}} or [["a", "b", 3]]) or as
a tree given by parent links ({"parent": {"depth_zbuffer": "3d", "3d": "root", ...}}, path
lengths counted in edges). Without one, the Taskonomy five use the path lengths of the Taskonomy
tree (DESIGN.md). Limits: a fixed prior, blind to data, architecture and training; the tree was
built for transfer learning, not joint training.
"""

from __future__ import annotations

import math
from collections import deque

from raytaskaff.scorers.base import Artifacts, Needs, Scorer, ScorerError, register

#: Path lengths in the Taskonomy tree between the reference study's five tasks.
TASKONOMY_FIVE = {
    ("segment_semantic", "keypoints2d"): 8, ("segment_semantic", "edge_texture"): 6,
    ("segment_semantic", "depth_zbuffer"): 8, ("segment_semantic", "normal"): 5,
    ("keypoints2d", "edge_texture"): 4, ("keypoints2d", "depth_zbuffer"): 12, ("keypoints2d", "normal"): 9,
    ("edge_texture", "depth_zbuffer"): 10, ("edge_texture", "normal"): 7, ("depth_zbuffer", "normal"): 5,
}


def tree_distances(parent: dict[str, str]) -> dict[tuple[str, str], int]:
    """Path lengths between every two nodes of the tree given by `parent` links (BFS per node)."""
    neighbours: dict[str, set[str]] = {}
    for child, up in parent.items():
        neighbours.setdefault(child, set()).add(up)
        neighbours.setdefault(up, set()).add(child)
    out = {}
    for start in neighbours:
        seen, queue = {start: 0}, deque([start])
        while queue:
            node = queue.popleft()
            for nxt in neighbours[node] - seen.keys():
                seen[nxt] = seen[node] + 1
                queue.append(nxt)
        out.update({(start, other): d for other, d in seen.items()})
    return out


def distances(taxonomy) -> dict[tuple[str, str], float]:
    """Symmetric distances from any accepted taxonomy form (see the module docstring)."""
    if taxonomy is None:
        pairs = dict(TASKONOMY_FIVE)
    elif isinstance(taxonomy, dict) and set(taxonomy) == {"parent"}:
        pairs = tree_distances(taxonomy["parent"])
    elif isinstance(taxonomy, dict):
        pairs = {(a, b): d for a, row in taxonomy.items() for b, d in row.items()}
    elif isinstance(taxonomy, (list, tuple)):
        try:
            pairs = {(a, b): d for a, b, d in taxonomy}
        except (TypeError, ValueError):
            raise ScorerError("td: taxonomy lists must hold [task, task, distance] triples") from None
    else:
        raise ScorerError(f"td: cannot read a taxonomy of type {type(taxonomy).__name__}")
    out = {}
    for (a, b), d in pairs.items():
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < math.inf:
            raise ScorerError(f"td: distance between {a} and {b} must be a non-negative number, got {d!r}")
        if (b, a) in out and out[b, a] != d:
            raise ScorerError(f"td: {a}-{b} is {d} one way and {out[b, a]} the other")
        out[a, b] = out[b, a] = float(d)
    return out


@register
class TaxonomicalDistance(Scorer):
    name = "td"
    needs = Needs()

    def skip_reason(self, tasks: tuple[str, ...], taxonomy: dict | list | None = None) -> str | None:
        """None when the taxonomy (given, or the Taskonomy five's) covers every pair of `tasks`.
        Without a taxonomy, other tasks leave td out; a given taxonomy that misses a pair is an error."""
        table = distances(taxonomy)
        missing = [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1:] if (a, b) not in table]
        if not missing:
            return None
        if taxonomy is None:
            return (f"no taxonomy given (scorers.td.taxonomy) and the built-in one covers only the Taskonomy tasks "
                    f"{', '.join(dict.fromkeys(t for pair in TASKONOMY_FIVE for t in pair))}, not {missing[0][0]}-{missing[0][1]}")
        raise ScorerError(f"td: the taxonomy has no distance between {missing[0][0]} and {missing[0][1]}")

    def compute(self, artifacts: Artifacts, taxonomy: dict | list | None = None) -> dict[tuple[str, str], float]:
        table = distances(taxonomy)
        missing = [pair for pair in artifacts.ordered_pairs() if pair not in table]
        if missing:
            raise ScorerError(f"td: the taxonomy has no distance between {missing[0][0]} and {missing[0][1]}")
        return {pair: -table[pair] for pair in artifacts.ordered_pairs()}
