"""The cost model of a sweep, shared by the dry run and the engine: how long each run trains
(measured rates of `throughput.json`, each kind of run by its measured factor over its STL run),
how trials share the devices, and the wall-clock of a list of trials (longest first).

`choose_bundles` decides whether bundling pays: the runs' trials as the sweep bundles them
(sized to memory on GPUs, `training.memory_table.sized_bundles`) against one network per trial, under
this same model, and the faster of the two (bundled where they tie). A bundle saves Tune's
per-trial time and, where a measured bundle factor says so, device time; it costs the balance of
coarser trials. So small networks, whose runs are short beside Tune's time per trial, are
bundled, and a network that fills its share of a GPU for hours trains alone.
"""

from __future__ import annotations

import math

from raytaskaff.config import SweepConfig
from raytaskaff.errors import RaytaskaffError
from raytaskaff.plan import Run, bundles

#: Task families with a dense decoder (the others have a pooled linear head).
DENSE_FAMILIES = ("dense_regression", "dense_classes")


def manifest_of(config: SweepConfig):
    """The manifest of the sweep's shard dataset, or None (synthetic, or not readable yet)."""
    if config.data.kind == "synthetic":
        return None
    from raytaskaff.data.shards import Manifest

    try:
        return Manifest.load(config.data.path)
    except RaytaskaffError:
        return None


def train_views(config: SweepConfig) -> tuple[int, int, str] | None:
    """(training views, image size, where the count comes from) of the sweep's data, when known
    without reading it: a synthetic dataset's train split is whole buildings, cut by the generator's
    own `SynthConfig.splits` (not n times the train fraction); shards say theirs in the manifest."""
    d = config.data
    if d.kind == "synthetic":
        from raytaskaff.data.synth import SynthConfig

        # as pipeline.prepare_data renders it
        synth = SynthConfig(n=d.n, size=d.size, seed=d.seed, split_fractions=d.splits)
        per = synth.views_per_building
        views = sum(min(per, d.n - i * per) for i, split in enumerate(synth.splits()) if split == "train")
        return views, d.size, f"the train split of {d.n} synthetic views, whole buildings of {per}"
    manifest = manifest_of(config)
    if manifest is None:
        return None
    return manifest.splits.get("train", {}).get("count", 0), manifest.size, f"the train split of {d.path}"


def eval_views(config: SweepConfig, train: int) -> tuple[int, int] | None:
    """(validation, test) views of the sweep's data, scaled by `train` over the dataset's own
    training views where those are given; None where the dataset does not tell them."""
    d = config.data
    if d.kind == "synthetic":
        from raytaskaff.data.synth import SynthConfig

        synth = SynthConfig(n=d.n, size=d.size, seed=d.seed, split_fractions=d.splits)
        per = synth.views_per_building
        counts: dict[str, int] = {}
        for i, split in enumerate(synth.splits()):
            counts[split] = counts.get(split, 0) + min(per, d.n - i * per)
    else:
        manifest = manifest_of(config)
        if manifest is None:
            return None
        counts = {name: split.get("count", 0) for name, split in manifest.splits.items()}
    own = counts.get("train", 0)
    scale = train / own if own else 1.0
    return round(counts.get("val", 0) * scale), round(counts.get("test", 0) * scale)


def run_cost(run: Run, table, kinds, kind: str, config: SweepConfig, network, px: int, samples: int, forward: float,
              dense: dict):
    """(device-seconds, the STL rate used, the run's cost factor over its STL run's) of one run
    (`samples` training samples, `forward` evaluation samples in training samples' work), or None
    when nothing is measured on the device kind."""
    from raytaskaff import throughput

    heads = [dense[t] for t in run.tasks]
    batch = config.training.batch_size
    found = throughput.rate(table, kind, config.model.preset, px, 1, batch, network=network, dense=heads[:1])
    if found is None:
        return None
    factor = throughput.kind_factor(kinds, table, kind, config.model.preset, px, len(run.tasks), len(run.inject), heads,
                                    network, batch)
    probes = throughput.PROBE_FACTOR if run.probes else 1.0
    return (samples * probes + forward) / found.samples_per_second * factor.value, found, factor


def trial_seconds(bundled, seconds: dict[str, float], factor) -> list[float]:
    """Device-seconds of each trial (a bundle's runs at the measured bundle factor)."""
    out = []
    for b in bundled:
        total = sum(seconds[run.key] for run in b.runs)
        out.append(total * factor.factor if factor is not None and len(b.runs) > 1 else total)
    return out


def trial_slots(devices: int, kind: str, cpus_per_run: float, gpus_per_run: float, max_concurrent: int | None,
                trials: int) -> tuple[int, float]:
    """(trials at once, the slowdown of each): on GPUs, 1 / gpus_per_run trials fit a GPU and the
    trials at once spread over the GPUs, those sharing one each at that share of its speed (no gain
    from packing is counted); on CPU cores, cores / cpus_per_run trials, each on its own cores at
    the measured one-core rate times its cores (perfect scaling, a bound)."""
    share = gpus_per_run if kind == "cuda" else max(cpus_per_run, 1.0)
    slots = max(1, int(devices / share + 1e-9)) if share else devices
    if max_concurrent:
        slots = min(slots, max_concurrent)
    running = max(1, min(slots, trials))
    if kind == "cuda":
        return running, float(math.ceil(running / devices))
    return running, 1.0 / min(share, devices)


def wall_seconds(trials: list[float], devices: int, kind: str, cpus_per_run: float, gpus_per_run: float,
                 max_concurrent: int | None = None, overhead: float = 0.0) -> float:
    """Wall-clock seconds of trials of `trials` device-seconds each: `trial_slots` trials at once,
    each taking its device-seconds times its slowdown plus `overhead` (Tune's per-trial time),
    placed longest first on the slot free first (`makespan`)."""
    slots, slowdown = trial_slots(devices, kind, cpus_per_run, gpus_per_run, max_concurrent, len(trials))
    return makespan([s * slowdown + overhead for s in trials], slots)


def makespan(seconds: list[float], devices: int, in_order: bool = False) -> float:
    """Wall-clock seconds of trials taking `seconds` each on `devices` devices, each trial placed,
    longest first, on the device free first (LPT list scheduling: within 4/3 of the optimum, and
    never below the longest trial or the total over the devices); `in_order`: in the order given
    instead (what starting trials in plan order costs, `bench.savings`)."""
    import heapq

    free = [0.0] * devices
    for s in (seconds if in_order else sorted(seconds, reverse=True)):
        heapq.heapreplace(free, free[0] + s)
    return max(free)


def longest_first(config: SweepConfig, trials: list, px: int, views: int) -> list:
    """The trials (`plan.Bundle`s) in the order the engine starts them: longest first by the cost
    model, as `wall_seconds` places them, so that the longest trials do not start last and leave
    the other devices idle at the end; equal trials keep plan order. Where nothing is measured on
    the device kind, a run's work is its networks' heads and injected inputs, probed runs at
    `throughput.PROBE_FACTOR`. The order changes no result: a run's seed fixes its weights and its
    data order, whichever trial starts first."""
    from raytaskaff import throughput

    try:
        costs = run_costs(config, [r for t in trials for r in t.runs], px, views)
    except RaytaskaffError:
        costs = None

    def seconds(run: Run) -> float:
        if costs is not None:
            return costs[run.key][0]
        return (len(run.tasks) + len(run.inject)) * (throughput.PROBE_FACTOR if run.probes else 1.0)

    return sorted(trials, key=lambda t: -sum(seconds(r) for r in t.runs))



def device_kind(config: SweepConfig) -> str:
    return "cuda" if config.resources.gpus_per_run else "cpu"


def run_costs(config: SweepConfig, runs: list[Run], px: int, views: int) -> dict | None:
    """{run key: (device-seconds, the STL rate used, the kind factor)} of `runs` trained on `views`
    training views of `px` px for the config's epochs, evaluation included where the split sizes
    are known; None when nothing is measured on the sweep's device kind."""
    from raytaskaff import throughput

    kind = device_kind(config)
    batch = config.training.batch_size
    samples = views // batch * batch  # the training loop drops the last partial batch
    table, kinds = throughput.load_table(), throughput.load_kind_factors()
    network = config.model.build()
    dense = {name: spec.family in DENSE_FAMILIES for name, spec in config.task_specs.items()}
    evaluated = eval_views(config, views)
    epochs = config.training.epochs
    # evaluation: a forward pass, a third of a training step's work per sample
    forward = (evaluated[0] * epochs + evaluated[1]) * throughput.FORWARD_SHARE if evaluated else 0.0
    costs = {run.key: run_cost(run, table, kinds, kind, config, network, px, samples * epochs, forward, dense) for run in runs}
    return None if any(c is None for c in costs.values()) else costs


def sized(config: SweepConfig, runs: list[Run], px: int | None, slots: int | None, gpu_memory: float | None = None):
    """The runs' trials as the sweep bundles them: on GPUs sized to each trial's memory at `px`
    (when known) and cut to at least `slots` trials (`training.memory_table.sized_bundles`)."""
    r = config.resources
    if not r.gpus_per_run or r.bundle_limit == 1:
        return bundles(runs, r.bundle_limit)
    if px is None:  # the image size is not known: not sized to memory
        return bundles(runs, r.bundle_limit, slots=slots)
    from raytaskaff.training.memory_table import sized_bundles

    return sized_bundles(runs, config, px, slots, gpu_memory)


def slots_of(config: SweepConfig, devices: int | None) -> int | None:
    """Trials that `devices` GPUs hold at once (None on CPUs or when not known)."""
    r = config.resources
    return int(devices / min(r.gpus_per_run, 1.0)) if devices and r.gpus_per_run else None


def choose_bundles(config: SweepConfig, runs: list[Run], px: int | None, views: int | None, devices: int | None,
                   gpu_memory: float | None = None) -> tuple[list, str]:
    """(the trials, why): the bundled trials (`sized`), unless one network per trial is faster on
    `devices` under the cost model, which needs GPU runs, their image size, training views and a
    measured rate; else the bundled trials as configured."""
    from raytaskaff import throughput

    r = config.resources
    bundled = sized(config, runs, px, slots_of(config, devices), gpu_memory)
    if not r.gpus_per_run or r.bundle_limit == 1 or not runs or None in (px, views, devices):
        return bundled, ""
    try:
        costs = run_costs(config, runs, px, views)
    except RaytaskaffError:
        costs = None
    if costs is None:
        return bundled, ""
    seconds = {key: c[0] for key, c in costs.items()}
    kind = device_kind(config)
    factor = throughput.bundle_factor(kind, config.model.preset)
    overhead = throughput.trial_overhead(kind)
    per = overhead.seconds if overhead is not None else 0.0

    def wall(trials) -> float:
        return wall_seconds(trial_seconds(trials, seconds, factor), devices, kind, r.cpus_per_run, r.gpus_per_run,
                            r.max_concurrent, per)

    alone = bundles(runs, 1)
    together, apart = wall(bundled), wall(alone)
    if apart < together:
        return alone, (f"one network per trial: bundled, the trials would take {together / 3600:.2f} h on {devices} GPUs "
                       f"against {apart / 3600:.2f} h apart (runs this long gain nothing from sharing a trial)")
    return bundled, ""
