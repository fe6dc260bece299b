"""The memory model against the memory a real training step takes, on CPU.

    python -m bench.memory [--presets small,medium,large,resnet18,tag_celeba] [--sizes 32,64]
                           [--batch 8] [--json] [--record]

For every shipped preset at each size: a pair network (segment_semantic + depth_zbuffer, the
Taskonomy heads) trained one real step, as the trainer does it (`training.units.PlainUnit.step`
on a batch decoded by `training.evaluation.Inputs` from stored integers, Adam), in fp32 and in bf16 (CPU autocast);
and a fused bundle of three networks (STL segment_semantic, STL depth_zbuffer and their pair,
`FusedUnit.step`) in fp32. The measured peak: the bytes held before the step (parameters,
buffers, the optimizer's state, counted from the tensors) plus the highest running total of the
profiler's CPU allocation events during the step (`torch.profiler.profile(profile_memory=True)`:
every allocation and free of torch's CPU allocator). Against it, two predictions:
- `table`: the recorded parts (`raytaskaff/training/memory.json`, what the planner and the dry
  run use, measured at 16 or 32 px, batches 2 and 4), scaled to the batch and size;
- `direct`: the network measured alone (`training.memory.measure` at batches 2 and 4 at the size,
  up to 32 px, with a proxy loss), scaled the same way.
Ratio: prediction / measured (aim: within 0.75 to 1.25).

--record measures every preset's parts and writes the table first.
"""

from __future__ import annotations

import argparse
import json
import torch

PAIR = ("segment_semantic", "depth_zbuffer")


def raw_batch(batch: int, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch as the reader yields it: Taskonomy's stored integers (random, depth partly invalid)."""
    g = torch.Generator().manual_seed(seed)
    return {"rgb": torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g),
            "segment_semantic": torch.randint(0, 18, (batch, size, size, 1), dtype=torch.uint8, generator=g),
            "depth_zbuffer": torch.randint(0, 2**16, (batch, size, size, 1), generator=g).to(torch.uint16)}


def _peak_during(fn) -> int:
    """Highest bytes allocated above the start while `fn` runs, from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    from raytaskaff.training.memory import _allocations

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((total for _, total in _allocations(prof)), default=0)


def measured_peak(preset: str, size: int, batch: int, precision: str = "fp32", fused: bool = False) -> int:
    """Bytes at the peak of one real training step (the second: the optimizer's state exists), as
    the module says: a pair network (PlainUnit), or a fused unit of the STL and pair networks."""
    from raytaskaff.models import MultiTaskNet
    from raytaskaff.settings import RunSpec
    from raytaskaff.settings import preset as model_preset
    from raytaskaff.tasks import task
    from raytaskaff.training.bundle import Member, _no_autocast, _State
    from raytaskaff.training.evaluation import Inputs
    from raytaskaff.training.units import FusedUnit, PlainUnit
    from raytaskaff.training.loop import TrainConfig
    from raytaskaff.training.memory import _autocast

    config = TrainConfig(batch_size=batch, optimizer="adam", amp=False)
    tasks = [task(n) for n in PAIR]
    specs = [[tasks[0]], [tasks[1]], tasks] if fused else [tasks]
    states = []
    for ts in specs:
        net = MultiTaskNet(ts, model_preset(preset), seed=0).to(memory_format=torch.channels_last)
        states.append(_State(Member(RunSpec(tuple(t.name for t in ts))), ts, [], net))
    unit = FusedUnit(states, config, torch.device("cpu"), lambda s: 1.0) if fused else \
        PlainUnit(states[0], config, torch.device("cpu"), 1, lambda s: 1.0)
    autocast = _autocast(precision) if precision == "bf16" else _no_autocast
    raw = raw_batch(batch, size)
    unit.step(Inputs(raw, states, {}, "rgb"), 0, autocast, False)  # the first step makes the optimizer's state
    unit.optimizer.zero_grad(set_to_none=True)
    held = sum(t.nbytes for t in _tensors(unit))
    return held + _peak_during(lambda: unit.step(Inputs(raw, states, {}, "rgb"), 1, autocast, False))


def _tensors(unit) -> list[torch.Tensor]:
    if hasattr(unit, "fused"):
        params = unit.fused.parameters()
        buffers = [b for part in unit.fused.buffers.values() for b in part.values()]
    else:
        params, buffers = list(unit.model.parameters()), list(unit.model.buffers())
    state = [v for s in unit.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return [*params, *buffers, *state]


def networks(fused: bool):
    """The networks of a case, as the memory model sees them: (out_channels, dense) per head."""
    from raytaskaff.tasks import task
    from raytaskaff.training.memory_table import Network

    heads = [(task(n).out_channels, True) for n in PAIR]
    return [Network((heads[0],)), Network((heads[1],)), Network(tuple(heads))] if fused else [Network(tuple(heads))]


def predicted(preset: str, size: int, batch: int, precision: str, fused: bool) -> tuple[float, float]:
    """(table, direct) predictions of the case's training peak, in bytes."""
    from raytaskaff.settings import preset as model_preset
    from raytaskaff.training.memory import bundle_bytes
    from raytaskaff.training.memory_table import predict_bundle

    nets = networks(fused)
    table = predict_bundle(preset, size, nets, batch, precision, fuse=fused)[0]
    direct = bundle_bytes(model_preset(preset), size, nets, batch, precision, fuse=fused)[0]
    return table, direct


def rows(presets: list[str], sizes: list[int], batch: int, say=print) -> list[dict]:
    out = []
    for preset in presets:
        for size in sizes:
            for precision, fused in (("fp32", False), ("bf16", False), ("fp32", True)):
                peak = measured_peak(preset, size, batch, precision, fused)
                table, direct = predicted(preset, size, batch, precision, fused)
                out.append({"preset": preset, "size": size, "batch": batch, "precision": precision,
                            "case": "fused STL+STL+pair" if fused else "pair", "measured_mib": peak / 2**20,
                            "table_mib": table / 2**20, "direct_mib": direct / 2**20,
                            "table_ratio": table / peak, "direct_ratio": direct / peak})
                say(_line(out[-1]))
    return out


def _line(r: dict) -> str:
    return (f"| {r['preset']} | {r['size']} | {r['batch']} | {r['precision']} | {r['case']} | {r['measured_mib']:.1f} | "
            f"{r['table_mib']:.1f} | {r['table_ratio']:.2f} | {r['direct_mib']:.1f} | {r['direct_ratio']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,medium,large,resnet18,tag_celeba")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", action="store_true", help="measure the presets' parts and write the table first")
    args = parser.parse_args(argv)
    presets = args.presets.split(",")
    if args.record:
        from raytaskaff.training.memory import record

        record(presets)
    if not args.json:
        print("| preset | px | batch | precision | case | measured MiB | table MiB | table/measured | direct MiB | direct/measured |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    found = rows(presets, [int(s) for s in args.sizes.split(",")], args.batch, say=(lambda _: None) if args.json else print)
    if args.json:
        print(json.dumps(found))
    worst = max(abs(r[k] - 1) for r in found for k in ("table_ratio", "direct_ratio"))
    return 0 if worst <= 0.25 else 1


if __name__ == "__main__":
    raise SystemExit(main())
