"""The chance level of a task: the test loss of its family's trivial predictor.

A single-task network that does not clearly beat a constant guess has learned nothing, and the
gains measured with it as target are noise. The trivial predictor of a family is fitted on the
train split (the training mean for regression, the class prior for classes, the positive rate
of each binary entry: `tasks.Task.prior_sums`, `chance_prediction`) and scored with the task's own
loss on the test split, batch by batch as the networks are (`training.evaluation.evaluate_units`).

The fit reads at most `rows` training views (a seeded shuffled sample; all of a small split), so
its cost is bounded on large datasets; the test pass reads the labels only, no network runs.
"""

from __future__ import annotations

import torch

from raytaskaff.tasks import Task
from raytaskaff.training.prefetch import prefetch

#: Training views the trivial predictor is fitted on, at most.
FIT_ROWS = 8192


def label_fields(tasks: list[Task], data) -> list[str]:
    """The fields that make the tasks' targets: each task's label, and the masks the split has."""
    names = [f for t in tasks for i, f in enumerate(t.fields()) if i == 0 or f in data.domains]
    return list(dict.fromkeys(names))


@torch.no_grad()
def chance_losses(tasks: list[Task], train, test, stats: dict, device: torch.device, batch_size: int,
                  rows: int = FIT_ROWS, seed: int = 0) -> dict[str, float]:
    """{task: test loss of its trivial predictor} (mean over test views, batches weighted by size).

    train, test: splits with `batches` (`data.reader.SplitData`, `data.stream.StreamingSplit`);
    stats: the normalisation statistics the targets are made with."""
    if not tasks:
        return {}
    sums: dict[str, dict[str, torch.Tensor]] = {t.name: {} for t in tasks}
    seen = 0
    for batch in train.batches(batch_size, label_fields(tasks, train), shuffle=True, seed=seed):
        raw = {k: v.to(device) for k, v in batch.items()}
        for t in tasks:
            for k, v in t.prior_sums(t.target(raw, stats)).items():
                sums[t.name][k] = sums[t.name].get(k, 0) + v
        seen += len(next(iter(batch.values())))
        if seen >= rows:
            break
    totals, count = {t.name: 0.0 for t in tasks}, 0
    for batch in prefetch(test.batches(batch_size, label_fields(tasks, test)), 0):
        raw = {k: v.to(device) for k, v in batch.items()}
        n = len(next(iter(batch.values())))
        for t in tasks:
            target = t.target(raw, stats)
            totals[t.name] += float(t.loss_value(t.chance_prediction(sums[t.name], target), target)) * n
        count += n
    return {name: total / max(count, 1) for name, total in totals.items()}
