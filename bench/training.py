"""Training throughput and the cost of gradient instrumentation, measured side by side.

    python -m bench.training [--data DIR] [--device cpu|cuda] [--threads 1] [--batch-size 64]
                             [--tasks 1,2,5,10] [--model small] [--size 32] [--resident]
                             [--gather-threads N] [--record] [--json]
    python -m bench.training --kinds [--model small] [--heads dense|pooled] [--size 32] [--device cpu]
                             [--repetitions 24] [--steps 1] [--record]

1. throughput: training samples per second of a model preset (default "small") for 1, 2, 5 and 10
   tasks (one epoch of the train split; validation excluded), fed by the reader as a trial is
   (`--gather-threads`, default: the trial's rule, `TrainConfig.feed`); --record writes them into
   raytaskaff/throughput.json, where the dry run's device-hour estimates come from;
   --resident: the roofline first, the same epoch on batches that already sit on the device
   (gathered once, handed out again every step), the network's own limit; the fed rate is then
   given as a fraction of it (aim on a GPU: >= 0.8);
2. instrumentation overhead: the same MTL epoch with gradient probes (gs and etap every step, the
   TAG lookahead every 10 steps) over the epoch without (aim: at most 1.3x), and with gs and etap
   recorded every 10th step only;
3. --kinds: the cost of a preset's pair, all-task and label-injection networks relative to its
   single-task (STL) network, timed side by side in one process, interleaved (each repetition
   times every network for `--steps` training steps on the same resident batch, in a rotated
   order; on a CPU the process's CPU time, on a GPU the wall-clock; the factor is the ratio of
   the fastest repetitions: on a shared machine other work only ever adds time). `--override decoder_width=64` measures a preset with sizes overridden, as a
   config may (the default's decoders are 64 wide). `--heads dense` uses the synthetic data's dense
   tasks (1, 2, 5, 10 of them), `--heads pooled` CelebA-like image-level attributes (1, 2, 5, 10,
   40; a fake CelebA of tests/fake_celeba.py, converted by the folder converter): a second head
   costs a dense decoder but only a linear layer on pooled features. --record writes them into
   raytaskaff/throughput.json ("kinds"), where the dry run's per-kind cost factors come from.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from types import SimpleNamespace

import torch

from bench.rows import Row, bench_parser, report
from raytaskaff.data.reader import SplitData
from raytaskaff.data.shards import Manifest
from raytaskaff.data.synth import SynthConfig, generate
from raytaskaff.models import preset
from raytaskaff.training.loop import DataSplits, RunSpec, TrainConfig, train
from raytaskaff.training.probes import ProbeConfig

TEN = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal",
       "depth_euclidean", "reshading", "edge_occlusion", "principal_curvature", "autoencoding")


class ResidentSplit:
    """A training split whose batches already sit on `device`: the first `held` batches of the
    split's first shuffled epoch, gathered once per set of fields and handed out again in turn
    for every step of every epoch, so that an epoch measures the network alone."""

    def __init__(self, split: SplitData, device: str, held: int = 8) -> None:
        self.split, self.device, self.held = split, device, held
        self.size, self.domains = split.size, split.domains
        self._batches: dict[tuple, list[dict[str, torch.Tensor]]] = {}

    def __len__(self) -> int:
        return len(self.split)

    def batches(self, *args, **kwargs):
        """The split's own batches (the chance-level fit before training reads them)."""
        return self.split.batches(*args, **kwargs)

    def jobs(self, batch_size: int, domains: list[str] | None = None, *, shuffle: bool = False, seed: int = 0,
             drop_last: bool = False):
        names = tuple(domains if domains is not None else self.domains)
        if (names, batch_size) not in self._batches:
            first = itertools.islice(self.split.jobs(batch_size, list(names), shuffle=True, seed=0, drop_last=True), self.held)
            self._batches[names, batch_size] = [{k: v.to(self.device) for k, v in job(False).items()} for job in first]
        held = self._batches[names, batch_size]
        steps = len(self) // batch_size if drop_last else -(-len(self) // batch_size)
        for step in range(steps):
            yield lambda pin, batch=held[step % len(held)]: batch


def epoch_seconds(spec: RunSpec, data: DataSplits, device: str, probes: ProbeConfig | None, batch_size: int,
                  model: str = "small", gather_threads: int | None = None) -> float:
    """Seconds of one training epoch: the second of two, so that building the model, the first
    steps' warm-up and the chance-level fit stay out (the validation pass, which the epoch
    callback follows, is timed on its own and subtracted). A `ResidentSplit` as the training
    split is read with no feed at all (no threads, nothing to pin)."""
    marks = []
    resident = isinstance(data.train, ResidentSplit)
    config = TrainConfig(epochs=2, batch_size=batch_size, device=device, probes=probes, eval_batch_size=512,
                         gather_threads=0 if resident else gather_threads, prefetch=0 if resident else None)
    # the callback fires after each epoch's validation; time that pass separately and subtract it
    train(spec, preset(model), config, data, seed=0, on_epoch=lambda e, r: marks.append(time.perf_counter()))
    return marks[1] - marks[0] - _validation_seconds(spec, data, device, model)


def _validation_seconds(spec, data, device, model: str = "small") -> float:
    import contextlib

    from raytaskaff.models import MultiTaskNet
    from raytaskaff.tasks import task
    from raytaskaff.training.bundle import resolve_device
    from raytaskaff.training.evaluation import evaluate_network

    tasks = [task(n) for n in spec.tasks]
    net = MultiTaskNet(tasks, preset(model)).to(resolve_device(device))
    start = time.perf_counter()
    evaluate_network(net, data.val, tasks, [], data.stats, resolve_device(device), 512, contextlib.nullcontext)
    return time.perf_counter() - start


def device_name(device: str, threads: int) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    import platform
    import re
    import subprocess

    try:  # the CPU's model, as docs/benchmarks.md names machines
        name = re.search(r"^Model name:\s*(.+)$", subprocess.run(["lscpu"], capture_output=True, text=True).stdout, re.M)[1].strip()
    except (OSError, TypeError):
        name = platform.processor() or platform.machine()
    return f"{name} ({os.cpu_count()} CPUs), {threads} thread(s)"


def rows(path: str | None = None, device: str = "cpu", threads: int = 1, batch_size: int = 64,
         counts: tuple[int, ...] = (1, 2, 5, 10), model: str = "small", size: int = 32,
         rates: dict[int, float] | None = None, resident: bool = False, gather_threads: int | None = None) -> Iterator[Row]:
    """Rows for runs of the first `counts` tasks of TEN; renders a synthetic dataset of `size` px
    at `path` (default data/synthetic-SIZE) if missing. `rates` receives {tasks: samples/s} (fed).
    resident: each count's roofline first, and the fed rate as a fraction of it."""
    torch.set_num_threads(threads)
    path = path or f"data/synthetic-{size}"
    if not os.path.exists(os.path.join(path, "manifest.json")):
        generate(path, SynthConfig(n=5000 if size <= 64 else 1024, size=size, seed=0), workers=min(8, os.cpu_count() or 1))
    stats = Manifest.load(path).stats
    data = DataSplits(*(SplitData.open(path, s) for s in ("train", "val", "test")), stats=stats)
    n = len(data.train) // batch_size * batch_size
    print(f"device: {device_name(device, threads)}; model {model}; {n} training samples of {Manifest.load(path).size} px "
          f"per epoch, batch {batch_size}")
    feed = TrainConfig(gather_threads=gather_threads).feed(torch.device(device))
    print(f"feed: {feed.threads} gather thread(s), {feed.depth} batch(es) queued ahead, page-locked: {feed.pin}")
    epoch_seconds(RunSpec(TEN[:1]), data, device, None, batch_size, model, gather_threads)  # warm-up (cuDNN, caches), discarded
    on_device = DataSplits(ResidentSplit(data.train, device), data.val, data.test, stats=stats) if resident else None
    for count in counts:
        spec = RunSpec(TEN[:count])
        if on_device is not None:
            roof = n / epoch_seconds(spec, on_device, device, None, batch_size, model)
            yield Row("training", f"roofline (resident batches), {count} task(s)", f"{roof:.0f} samples/s")
        plain = epoch_seconds(spec, data, device, None, batch_size, model, gather_threads)
        if rates is not None:
            rates[count] = n / plain
        if on_device is not None:
            yield Row("training", f"  fed by the reader, {count} task(s)", f"{n / plain:.0f} vs {roof:.0f} samples/s",
                      n / plain / roof, ">= 0.8" if device.startswith("cuda") else "-")
        else:
            yield Row("training", f"throughput, {count} task(s)", f"{n / plain:.0f} samples/s")
        if count > 1:
            probed = epoch_seconds(spec, data, device, ProbeConfig(lookahead_every=10), batch_size, model, gather_threads)
            yield Row("training", f"instrumented epoch, {count} tasks", f"{probed:.1f} s vs {plain:.1f} s", probed / plain, "<= 1.3")
            sparse = epoch_seconds(spec, data, device, ProbeConfig(lookahead_every=10, gradients_every=10), batch_size, model,
                                   gather_threads)
            yield Row("training", f"  gs/etap every 10th step, {count} tasks", f"{sparse:.1f} s vs {plain:.1f} s", sparse / plain, "<= 1.3")


def tests_on_path() -> None:
    """tests/ importable (its fake CelebA generator, `fake_celeba`)."""
    import sys
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def _fake_celeba(size: int, n: int = 600) -> str:
    """A fake CelebA (tests/fake_celeba.py: 40 attributes, three drawn into the pixels) of `n`
    images converted at `size` px by the folder converter, under data/ (made once)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    out = Path(f"data/fake-celeba-{size}-{n}")
    if (out / "manifest.json").exists():
        return str(out)
    tests_on_path()
    import fake_celeba

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "celeba"
        fake_celeba.write(root, n=n)
        done = subprocess.run([sys.executable, "-m", "raytaskaff.data", "folder", "--images", str(root / "img_align_celeba"),
                               "--labels", str(root / "list_attr_celeba.txt"), "--split", str(root / "list_eval_partition.txt"),
                               "--group", str(root / "identity_CelebA.txt"), "--size", str(size), "--out", str(out)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the fake CelebA did not convert: {done.stderr.strip()[-300:]}")
    return str(out)


def kind_networks(heads: str, size: int, data: str | None = None):
    """(dataset path, its tasks in order) for `--kinds`: the synthetic data's ten dense tasks, or a
    fake CelebA's 40 attributes as binary tasks."""
    from raytaskaff.settings import TaskSpec
    from raytaskaff.tasks import resolve

    if heads == "dense":
        path = data or f"data/synthetic-{size}-512"
        if not os.path.exists(os.path.join(path, "manifest.json")):
            generate(path, SynthConfig(n=512, size=size, seed=0), workers=min(8, os.cpu_count() or 1))
        return path, [resolve(name, size=size) for name in TEN]
    tests_on_path()
    import fake_celeba

    path = data or _fake_celeba(size)
    fields = Manifest.load(path).all_fields()
    specs = [TaskSpec(name=a, family="binary", field="attributes", index=a) for a in fake_celeba.ATTRIBUTES]
    return path, [resolve(s.name, {s.name: s}, fields) for s in specs]


def kind_factors(model: str = "small", heads: str = "dense", device: str = "cpu", threads: int = 1, batch_size: int = 64,
                 size: int = 32, repetitions: int = 24, steps: int = 1, data: str | None = None,
                 counts: tuple[int, ...] | None = None, overrides: dict | None = None,
                 rate: dict[int, float] | None = None) -> tuple[dict[str, float], list[Row]]:
    """({"2": pair/STL, ..., "li": LI/STL}, rows): seconds per training step of each network over
    the STL network's, the fastest of `repetitions` each, all networks interleaved in this one process;
    `rate` receives the STL network's samples a second ({1: rate}).
    A step is what `training.units.PlainUnit.step` does without probes: decode the batch's
    targets (and injected labels), forward under the device's autocast, the summed loss's
    backward, an Adam step."""
    import contextlib
    import statistics

    from raytaskaff.models import MultiTaskNet
    from raytaskaff.training.bundle import resolve_device
    from raytaskaff.training.evaluation import Inputs, batch_fields

    torch.set_num_threads(threads)
    path, tasks = kind_networks(heads, size, data)
    counts = counts or ((2, 5, 10) if heads == "dense" else (2, 5, 10, 40))
    stats = Manifest.load(path).stats
    split = SplitData.open(path, "train")
    dev = resolve_device(device)
    nets = {"1": (tasks[:1], []), "li": (tasks[:1], tasks[1:2])}
    nets.update({str(n): (tasks[:n], []) for n in counts if n <= len(tasks)})
    domains = batch_fields([t for ts, inject in nets.values() for t in (*ts, *inject)], split)
    held = [{k: v.to(dev) for k, v in job(False).items()}
            for job in itertools.islice(split.jobs(batch_size, domains, shuffle=True, seed=0, drop_last=True), 4)]
    if not held:
        raise RuntimeError(f"{path}: fewer than {batch_size} training views, no full batch to time")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else contextlib.nullcontext
    units = {}
    for name, (ts, inject) in nets.items():
        net = MultiTaskNet(ts, preset(model, **(overrides or {})), inject=inject).to(dev).to(memory_format=torch.channels_last)
        units[name] = (net, torch.optim.Adam(net.parameters(), lr=1e-3), ts, inject)

    def step(name: str, batch: dict) -> None:
        net, optimizer, ts, inject = units[name]
        optimizer.zero_grad(set_to_none=True)
        inputs = Inputs(batch, [SimpleNamespace(tasks=ts, inject=inject)], stats, "rgb")
        with autocast():
            out = net(inputs.x, inputs.extra[tuple(t.name for t in inject)])
            loss = sum(t.loss_value(out[t.name], inputs.targets[t.name]) for t in ts)
        loss.backward()
        optimizer.step()

    # on a CPU the process's own CPU time (one thread): the time other work takes the core away is
    # not the network's; on a GPU the wall-clock, synchronised
    clock = time.perf_counter if dev.type == "cuda" else time.process_time

    def timed(name: str, count: int) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        for i in range(count):
            step(name, held[i % len(held)])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (clock() - start) / count

    for name in units:  # warm-up: allocations, cuDNN's choices, the first Adam state
        timed(name, 2)
    order = list(units)
    seconds: dict[str, list[float]] = {name: [] for name in units}
    for rep in range(repetitions):
        for name in order[rep % len(order):] + order[:rep % len(order)]:
            seconds[name].append(timed(name, steps))
    stl = min(seconds["1"])
    if rate is not None:  # samples a second of the STL network, from its fastest step
        rate[1] = batch_size / stl
    factors = {name: min(s) / stl for name, s in seconds.items() if name != "1"}
    print(f"device: {device_name(device, threads)}; model {model} {overrides or ''}, {heads} heads, {size} px, batch {batch_size}; "
          f"{repetitions} repetitions of {steps} steps, interleaved")
    out = [Row("training", f"kinds: STL step ({model}, {heads} heads)", f"{stl * 1000:.1f} ms")]
    for name, value in factors.items():
        what = "label injection (1 task + 1 injected)" if name == "li" else "pair" if name == "2" else f"{name} tasks"
        medians = statistics.median(seconds[name]) / statistics.median(seconds["1"])
        out.append(Row("training", f"kinds: {what} / STL ({model}, {heads})", f"x{value:.2f} (of the medians: x{medians:.2f})"))
    return factors, out


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser("training", __doc__)
    parser.add_argument("--data", default=None, help="dataset directory (default: data/synthetic-SIZE, rendered if missing)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tasks", default="1,2,5,10", help="task counts, comma-separated")
    parser.add_argument("--model", default="small", help="model preset (small, medium, large, resnet18)")
    parser.add_argument("--size", type=int, default=32, help="image size of the synthetic data rendered when --data is absent")
    parser.add_argument("--resident", action="store_true", help="measure the roofline on batches already on the device first")
    parser.add_argument("--gather-threads", type=int, default=None, help="gather threads of the fed runs (default: a trial's)")
    parser.add_argument("--record", action="store_true", help="write the throughput into raytaskaff/throughput.json")
    parser.add_argument("--kinds", action="store_true", help="time a preset's pair, all-task and LI networks against its STL network")
    parser.add_argument("--heads", default="dense", choices=("dense", "pooled"), help="--kinds: dense decoders or image-level heads")
    parser.add_argument("--repetitions", type=int, default=24, help="--kinds: interleaved repetitions")
    parser.add_argument("--steps", type=int, default=1, help="--kinds: training steps per network and repetition")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="--kinds: a size of the preset overridden, as a config's model section does (decoder_width=64)")
    args = parser.parse_args(argv)
    if args.kinds:
        _kinds(args, argv)
        return
    counts = tuple(int(c) for c in args.tasks.split(","))
    rates: dict[int, float] = {}
    report(rows(args.data, args.device, args.threads, args.batch_size, counts, args.model, args.size, rates, args.resident,
                args.gather_threads), args.json)
    if args.record:
        import sys
        from datetime import date

        from raytaskaff import throughput

        size = Manifest.load(args.data or f"data/synthetic-{args.size}").size
        throughput.record(throughput.Measurement(
            device_name(args.device, args.threads), "cuda" if args.device.startswith("cuda") else "cpu", args.model, size,
            args.batch_size, rates, torch.__version__, date.today().isoformat(), "python -m bench.training " + " ".join(sys.argv[1:])))
        print(f"recorded in {throughput.TABLE}", file=sys.stderr)


def _kinds(args, argv) -> None:
    import sys
    from datetime import date

    from raytaskaff import throughput

    counts = tuple(int(c) for c in args.tasks.split(",")) if args.tasks != "1,2,5,10" else None
    import yaml

    overrides = {}
    for pair in args.override:
        key, value = pair.split("=", 1)
        value = yaml.safe_load(value)
        overrides[key] = tuple(value) if isinstance(value, list) else value
    rate: dict[int, float] = {}
    factors, out = kind_factors(args.model, args.heads, args.device, args.threads, args.batch_size, args.size,
                                args.repetitions, args.steps, args.data, counts, overrides, rate)
    report(iter(out), args.json)
    if args.record:
        size = Manifest.load(args.data).size if args.data else args.size
        kind = "cuda" if args.device.startswith("cuda") else "cpu"
        command = "python -m bench.training " + " ".join(sys.argv[1:] if argv is None else argv)
        throughput.record_kind_factors(throughput.KindFactors(
            device_name(args.device, args.threads), kind, args.model, args.heads,
            size, args.batch_size, factors, {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
            args.repetitions, torch.__version__, date.today().isoformat(), command))
        # the STL network's rate too, where no epoch of this model on this kind is measured (a step on a
        # resident batch: no feed, so an upper bound; better than a rate scaled by FLOPs from another model)
        others = [m for m in throughput.load_table() if m.kind == kind and m.model == args.model and "--kinds" not in m.command]
        if not others and not overrides:
            throughput.record(throughput.Measurement(
                device_name(args.device, args.threads), kind, args.model, size, args.batch_size, rate, torch.__version__,
                date.today().isoformat(), command, args.heads))
        print(f"recorded in {throughput.TABLE}", file=sys.stderr)


if __name__ == "__main__":
    main()
