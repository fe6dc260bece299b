"""Command line of the data layer.

    python -m raytaskaff.data synth --out DIR --n N --size S --seed K
    python -m raytaskaff.data taskonomy --root DIR --out DIR --split paper|tiny|FILE --size S --domains ...
    python -m raytaskaff.data info DIR [--no-verify]

Bad input ends with a one-line `error: ...` on stderr and exit code 2; nothing half-written stays.
"""

from __future__ import annotations

import argparse
import sys

from raytaskaff.data.domains import REFERENCE_DOMAINS
from raytaskaff.errors import RaytaskaffError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raytaskaff.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="render the embedded synthetic Taskonomy-like dataset")
    synth.add_argument("--out", required=True, help="dataset directory to create")
    synth.add_argument("--n", type=_positive, required=True, help="number of views")
    synth.add_argument("--size", type=_positive, default=64, help="image size in pixels (default 64)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--render-size", type=_positive, default=None,
                       help="ray-cast resolution (default max(128, 2 * size)); labels are area-downsampled from it")
    synth.add_argument("--points-per-building", type=_positive, default=8)
    synth.add_argument("--views-per-point", type=_positive, default=3)
    synth.add_argument("--format", choices=("arrow", "parquet"), default="arrow")
    synth.add_argument("--rows-per-shard", type=_positive, default=1024, help="views per shard (default 1024)")
    synth.add_argument("--workers", type=_positive, default=1, help="rendering processes")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")

    conv = sub.add_parser("taskonomy", help="convert real Taskonomy files into shards")
    conv.add_argument("--root", required=True, help="Taskonomy root (per-building tars, omnitools or taskgrouping layout)")
    conv.add_argument("--out", required=True, help="dataset directory to create")
    conv.add_argument("--split", default="paper", help="paper, tiny, or a file assigning buildings to splits (omnidata CSV id,train,val,test or lines of building,split)")
    conv.add_argument("--size", type=_positive, default=256)
    conv.add_argument("--domains", nargs="+", default=list(REFERENCE_DOMAINS), help="label domains besides rgb")
    conv.add_argument("--format", choices=("arrow", "parquet"), default="arrow")
    conv.add_argument("--rows-per-shard", type=_positive, default=1024,
                      help="views per shard (default 1024; a streaming trial holds a few shards at a time)")
    conv.add_argument("--workers", type=_positive, default=1, help="decoding processes")
    conv.add_argument("--overwrite", action="store_true")
    conv.add_argument("--quiet", action="store_true", help="no progress bar")

    info = sub.add_parser("info", help="check a dataset against its manifest and summarise it")
    info.add_argument("root")
    info.add_argument("--no-verify", action="store_true", help="skip the SHA-256 of every shard")
    return parser


def _info(root: str, verify: bool) -> None:
    from raytaskaff.data.shards import Manifest, read_shard

    manifest = Manifest.load(root)
    for shard in manifest.shards:
        read_shard(root, shard, manifest, columns=[], verify=verify)
    print(f"{root}: {manifest.producer.get('source', '?')} dataset, {manifest.size}x{manifest.size}, format {manifest.format}")
    print(f"domains: {', '.join(manifest.domains)}")
    for split, info in manifest.splits.items():
        print(f"{split}: {info['count']} views in {len(info['buildings'])} buildings")
    print(f"{len(manifest.shards)} shards, all {'checked' if verify else 'present'}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "synth":
            from raytaskaff.data.synth import SynthConfig, generate

            config = SynthConfig(n=args.n, size=args.size, seed=args.seed, render_size=args.render_size,
                                 points_per_building=args.points_per_building, views_per_point=args.views_per_point)
            manifest = generate(args.out, config, format=args.format, workers=args.workers, rows_per_shard=args.rows_per_shard,
                                overwrite=args.overwrite, progress=sys.stderr.isatty())
            counts = ", ".join(f"{s} {i['count']}" for s, i in manifest.splits.items())
            print(f"wrote {args.out}: {counts} views of {args.size}x{args.size}, domains {', '.join(manifest.domains)}")
        elif args.command == "taskonomy":
            from raytaskaff.data.taskonomy import convert

            summary = convert(args.root, args.out, split=args.split, size=args.size, domains=args.domains,
                              format=args.format, overwrite=args.overwrite, progress=not args.quiet, workers=args.workers,
                              rows_per_shard=args.rows_per_shard)
            print(summary.format())
        else:
            _info(args.root, verify=not args.no_verify)
    except RaytaskaffError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
