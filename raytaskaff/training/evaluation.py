"""A batch decoded once for every network of a bundle, and the bundle's evaluation over a split.

`Inputs` makes a batch's images, targets and injected channels once for every network that reads
it; `evaluate_units` evaluates a bundle's units (`training.units`) over a split, a batch read once
for all of them; `evaluate_network` evaluates one network alone through the same code. These are
the only places that decode a batch for a network.
"""

from __future__ import annotations

import torch

from raytaskaff.data.transforms import rgb_input
from raytaskaff.training.chance import label_fields
from raytaskaff.training.prefetch import Feed


def batch_fields(tasks, data, input: str = "rgb") -> list[str]:
    """The fields a batch holds: the input, every task's label (predicted or injected), and the
    masks the split has."""
    return list(dict.fromkeys([input, *label_fields(tasks, data)]))


def fields_of(states: list, data, input: str) -> list[str]:
    """The fields a batch holds for the networks of `states` (each with `tasks` and `inject`)."""
    return batch_fields([t for s in states for t in (*s.tasks, *s.inject)], data, input)


class Inputs:
    """One batch decoded once for every member: images, every task's target, each injection's
    input channels. Images and injected channels come in the layout their networks compute in,
    each made once per batch: channels-last for the plain networks (`x`, `extra_of`), the
    standard layout for the stacked ones (`image`, `extra_of(state, torch.contiguous_format)`)."""

    def __init__(self, raw: dict[str, torch.Tensor], states: list, stats: dict, input: str) -> None:
        self._raw = raw[input]  # (B, H, W, 3) uint8
        self._images: dict[torch.memory_format, torch.Tensor] = {}
        tasks = {t.name: t for s in states for t in (*s.tasks, *s.inject)}
        self.targets = {name: t.target(raw, stats) for name, t in tasks.items()}
        size = tuple(self._raw.shape[1:3])
        self.extra: dict[tuple, torch.Tensor | None] = {(): None}
        for s in states:
            names = tuple(t.name for t in s.inject)
            if names not in self.extra:
                self.extra[names] = torch.cat([t.encode_input(self.targets[t.name], size) for t in s.inject], dim=1)
        self._standard_extra: dict[tuple, torch.Tensor | None] = {(): None}

    def __len__(self) -> int:
        return len(self._raw)

    def image(self, layout: torch.memory_format = torch.channels_last) -> torch.Tensor:
        """(B, 3, H, W) float images in `layout`."""
        if layout not in self._images:
            raw = self._raw
            if layout != torch.channels_last:  # reordered as bytes, a quarter of a float copy
                raw = raw.permute(0, 3, 1, 2).contiguous(memory_format=layout).permute(0, 2, 3, 1)
            self._images[layout] = rgb_input(raw).contiguous(memory_format=layout)
        return self._images[layout]

    x = property(image)

    def extra_of(self, state, layout: torch.memory_format = torch.channels_last) -> torch.Tensor | None:
        names = tuple(t.name for t in state.inject)
        if layout == torch.channels_last:
            return self.extra[names]
        if names not in self._standard_extra:
            self._standard_extra[names] = self.extra[names].contiguous(memory_format=layout)
        return self._standard_extra[names]


@torch.no_grad()
def evaluate_units(units: list, data, states: list, stats: dict, device: torch.device, batch_size: int,
                   autocast, feed: Feed, input: str, domains: list[str], chunk: int | None = None,
                   metrics: bool = True) -> dict[int, tuple[dict, dict]]:
    """{id(state): (mean loss per task, metrics per task)} over a split, for every live member.

    metrics: False leaves the task metrics out ({} each; the validation pass keeps losses only),
    which changes no loss.

    batch_size: rows read at a time; chunk: rows per forward (None: the whole batch). Each chunk
    adds its mean loss times its rows, as batches do: a loss that is a mean over every pixel or
    entry (L1, masked L1) is the unchunked one up to the order of floating-point sums; one that
    leaves some out of its denominator (cross-entropy's ignored ids, masked image-level entries)
    weighs chunks by rows, not by counted pixels (3e-5 relative apart in the tests). On a GPU the
    loop passes its training batch (`eval_chunk`): a forward without gradients of a training
    batch holds less than the training step, which keeps every activation it saves, so
    evaluation never needs more memory than training (`training.memory`)."""
    for u in units:
        u.train(False)
    totals = {id(s): {t.name: 0.0 for t in s.tasks} for s in states}
    sums = {id(s): {t.name: {} for t in s.tasks} for s in states}
    count = 0
    for batch in feed(data.jobs(batch_size, domains)):
        rows = len(next(iter(batch.values())))
        step = rows if chunk is None else max(1, chunk)
        for start in range(0, rows, step):
            part = {k: v[start:start + step].to(device, non_blocking=True) for k, v in batch.items()}
            inputs = Inputs(part, states, stats, input)
            n = len(inputs)
            for u in units:
                for position, preds in u.predict(inputs, autocast).items():
                    s = u.states[position]
                    for t in s.tasks:
                        totals[id(s)][t.name] += float(t.loss_value(preds[t.name], inputs.targets[t.name])) * n
                        if not metrics:
                            continue
                        for k, v in t.metric_sums(preds[t.name], inputs.targets[t.name], stats).items():
                            sums[id(s)][t.name][k] = sums[id(s)][t.name].get(k, 0) + v.cpu()
            count += n
    for u in units:
        u.train(True)
    return {id(s): ({k: v / max(count, 1) for k, v in totals[id(s)].items()},
                    {t.name: t.metrics_from_sums(sums[id(s)][t.name]) for t in s.tasks} if metrics else {})
            for s in states if s.alive}


def eval_chunk(config, device: torch.device) -> int | None:
    """Rows per evaluation forward: the training batch on a GPU (so that evaluation needs no more
    memory than training), the whole evaluation batch on a CPU (whose results stay as they were)."""
    return config.batch_size if device.type == "cuda" and config.eval_batch_size > config.batch_size else None


class _Alone:
    """One network as a unit of its own, for `evaluate_network` (what `evaluate_units` asks of a
    unit: its states, `predict` and `train`)."""

    def __init__(self, model, tasks: list, inject: list) -> None:
        self.model, self.tasks, self.inject, self.alive = model, tasks, inject, True
        self.states = [self]

    def predict(self, inputs: Inputs, autocast) -> dict[int, dict[str, torch.Tensor]]:
        with autocast():
            return {0: self.model(inputs.x, inputs.extra_of(self))}

    def train(self, mode: bool) -> None:
        self.model.train(mode)


def evaluate_network(model, split, tasks: list, inject: list, stats: dict, device: torch.device, batch_size: int,
                     autocast, feed: Feed = Feed(), input: str = "rgb") -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(mean loss per task, metrics per task) of one network (a `models.MultiTaskNet` on `device`)
    over a split, as `evaluate_units` evaluates a bundle's networks; the network is left in
    training mode."""
    unit = _Alone(model, tasks, inject)
    return evaluate_units([unit], split, [unit], stats, device, batch_size, autocast, feed, input,
                          fields_of([unit], split, input))[id(unit)]
