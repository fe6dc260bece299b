"""Did the single-task networks learn? Each target's STL test loss against its chance level.

A gain is measured against a target's STL network: if that network does no better than the
trivial predictor of its family (the training mean or class prior, `training.chance`), the gains
with it as target compare two networks that learned nothing, and a scorer judged on them is judged
against noise. Such a target is flagged in the headline, the warnings, the report's tables and
evaluation.json ("learning"); its gains are kept, not dropped, so that nothing is hidden.
"""

from __future__ import annotations

import numpy as np

#: A target learned when its mean STL test loss is below this fraction of its mean chance loss.
LEARNED_BELOW = 0.95


def learning(stl: dict[int, dict[str, float]], chance: dict[int, dict[str, float]], tasks: list[str]) -> dict[str, dict]:
    """{target: stl_loss, chance_loss (means over the seeds that have both), ratio, learned, seeds}.

    stl: {seed: {task: STL test loss}}; chance: {seed: {task: chance test loss}} (runs trained
    before chance levels were recorded have none: learned is None, "not measured")."""
    out = {}
    for task in tasks:
        seeds = [s for s in stl if task in stl[s] and task in chance.get(s, {})]
        if not seeds:
            out[task] = {"stl_loss": None, "chance_loss": None, "ratio": None, "learned": None, "seeds": 0}
            continue
        loss = float(np.mean([stl[s][task] for s in seeds]))
        level = float(np.mean([chance[s][task] for s in seeds]))
        ratio = loss / level if level > 0 else None
        out[task] = {"stl_loss": loss, "chance_loss": level, "ratio": ratio,
                     "learned": None if ratio is None else bool(ratio < LEARNED_BELOW), "seeds": len(seeds)}
    return out


def not_learned(checked: dict[str, dict]) -> list[str]:
    return [t for t, c in checked.items() if c["learned"] is False]


def learning_warnings(checked: dict[str, dict]) -> list[str]:
    """One warning per target whose STL networks did not beat chance."""
    return [f"{t}: its single-task networks did not beat chance (test loss {c['stl_loss']:.4g} against "
            f"{c['chance_loss']:.4g} for its family's trivial predictor, ratio {c['ratio']:.2f} >= {LEARNED_BELOW}): "
            f"the gains with {t} as target measure noise" for t, c in checked.items() if c["learned"] is False]


#: Most target names the headline lists; past it, it names the targets that learned, or counts.
NAMED_IN_HEADLINE = 8


def _names(tasks: list[str]) -> str:
    return tasks[0] if len(tasks) == 1 else ", ".join(tasks[:-1]) + " and " + tasks[-1]


def learning_clause(checked: dict[str, dict]) -> str:
    """The headline's opening clause when some target did not learn, else ''."""
    failed = not_learned(checked)
    if not failed:
        return ""
    names = _names(failed)
    if len(failed) > NAMED_IN_HEADLINE:  # at 40 tasks a list of 39 would be the headline
        learned = [t for t in checked if t not in failed]
        names = f"all but {_names(learned)}" if 0 < len(learned) <= NAMED_IN_HEADLINE else f"{', '.join(failed[:3])} and {len(failed) - 3} more"
    return (f"{len(failed)} of {len(checked)} targets did not learn ({names}: their single-task networks do not beat "
            "chance), so the gains with them as target are noise; ")
