"""Command line of the data layer.

    python -m raytaskaff.data synth --out DIR --n N --size S --seed K
    python -m raytaskaff.data taskonomy --root DIR --out DIR --split paper|tiny|FILE --size S --domains ...
    python -m raytaskaff.data folder --images DIR --labels FILE [--split FILE] [--group COLUMN|FILE] --size S --out DIR
    python -m raytaskaff.data plugin --module my_data.py --out DIR
    python -m raytaskaff.data info DIR [--no-verify]

Bad input ends with a one-line `error: ...` on stderr and exit code 2; nothing half-written stays,
also when the command is stopped by Ctrl-C (exit code 130) or SIGTERM (exit code 143).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from raytaskaff.data.domains import REFERENCE_DOMAINS
from raytaskaff.errors import RaytaskaffError, one_line


class Terminated(BaseException):
    """SIGTERM, raised where the command is: it unwinds as Ctrl-C does, so that the shard writer's
    `with` block removes its staging folder. A BaseException, so that no `except Exception` (a
    converter wrapping a user's generator) swallows it."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises Terminated in this process while the block runs. Worker processes forked
    meanwhile inherit the handler; in them SIGTERM still ends the process at once."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    pid = os.getpid()

    def handler(signum, frame) -> None:
        if os.getpid() != pid:
            os._exit(128 + signum)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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

    folder = sub.add_parser("folder", help="convert image files + a table of labels (CelebA's files understood)")
    folder.add_argument("--images", required=True, help="the image folder (CelebA: img_align_celeba, or its parent)")
    folder.add_argument("--labels", required=True, help="a CSV with a header (file name first), or list_attr_celeba.txt")
    folder.add_argument("--split", default=None, help="lines '<file> <split>', split 0/1/2 or train/val/test "
                        "(list_eval_partition.txt); default: a seeded 80/10/10 draw of whole groups")
    folder.add_argument("--group", default=None, help="what no two splits share: a label column, or lines '<file> <group>' "
                        "(identity_CelebA.txt); default: each image its own group")
    folder.add_argument("--size", type=_positive, default=64, help="images are cropped to their centred square and resized (default 64)")
    folder.add_argument("--out", required=True, help="dataset directory to create")
    folder.add_argument("--seed", type=int, default=0, help="seed of the split drawn without --split")
    folder.add_argument("--format", choices=("arrow", "parquet"), default="arrow")
    folder.add_argument("--rows-per-shard", type=_positive, default=1024)
    folder.add_argument("--overwrite", action="store_true")

    plugin = sub.add_parser("plugin", help="convert a dataset with your own file (it declares FIELDS and yields samples())")
    plugin.add_argument("--module", required=True, help="a .py file: see raytaskaff/data/plugin.py")
    plugin.add_argument("--out", required=True, help="dataset directory to create")
    plugin.add_argument("--format", choices=("arrow", "parquet"), default="arrow")
    plugin.add_argument("--rows-per-shard", type=_positive, default=1024)
    plugin.add_argument("--overwrite", action="store_true")

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
    print(f"{'fields' if manifest.declared else 'domains'}: {', '.join(manifest.domains)}")
    for split, info in manifest.splits.items():
        if manifest.declared:
            print(f"{split}: {info['count']} samples in {len(info['groups'])} groups ({manifest.group})")
        else:
            print(f"{split}: {info['count']} views in {len(info['buildings'])} buildings")
    print(f"{len(manifest.shards)} shards, all {'checked' if verify else 'present'}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with _sigterm_unwinds():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
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
        elif args.command == "folder":
            from raytaskaff.data.folder import convert as convert_folder

            summary = convert_folder(args.images, args.labels, args.out, args.size, split=args.split, group=args.group,
                                     seed=args.seed, format=args.format, rows_per_shard=args.rows_per_shard, overwrite=args.overwrite)
            print(summary.format())
        elif args.command == "plugin":
            from raytaskaff.data.plugin import convert as convert_plugin

            summary = convert_plugin(args.module, args.out, format=args.format, rows_per_shard=args.rows_per_shard,
                                     overwrite=args.overwrite)
            print(summary.format())
        else:
            _info(args.root, verify=not args.no_verify)
    except RaytaskaffError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated: nothing was written", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


if __name__ == "__main__":
    from raytaskaff.data.shards import exit_process

    exit_process(main())  # not sys.exit: a storage client still waiting can crash the teardown
