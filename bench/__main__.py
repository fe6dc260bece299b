"""Every benchmark of bench/, one after another, in one table of ratios and their aims.

    python -m bench [--only data_throughput,engine] [--quick] [--markdown]

Each benchmark runs in its own process, `python -m bench.<name> --json` with its default settings,
because bench.engine starts and stops Ray and bench.training sets torch's threads; its rows come
back as JSON. The table's "met" column says whether a ratio meets its aim (yes, NO, or - where there
is no aim); a missed aim is a result, not an error. A benchmark that fails gives one row with the
last line of its stderr, the others still run, and the command exits 1 at the end.

--quick passes small settings, for checking that every benchmark runs; its numbers are rough. On 2
CPU cores it takes about 3 minutes (2 min 53 s on the development machine: engine 79 s, the plain
loop and both engine passes training on the whole embedded split; data_throughput 54 s, 16 s of it
rendering its two 480-view datasets; training 34 s; grouping 3 s):
    data_throughput  --views 16 --steps 5   (16 views per generator rate; 5 timed training steps)
    training         --tasks 1,2            (no 5- and 10-task epochs)
    engine           --tasks 2 --epochs 1   (2 STL runs and 1 pair)
    grouping         --repeat 1
    scaling          --measure ""           (estimates and projections only; no sweep is run)
    readers          --sizes 64 --views 96  (no 256 px dataset)
    scale            --views 400,1200 --readers mmap  (datasets below 3x the store; no object-store pass)
    signal           one 240-view variant of 3 tasks, 1 epoch, 2 seeds (not the default's 45 runs)
--markdown prints the table as Markdown, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.rows import COLUMNS, Row, print_table

ROOT = Path(__file__).resolve().parent.parent
QUICK = {"data_throughput": ["--views", "16", "--steps", "5"], "training": ["--tasks", "1,2"],
         "engine": ["--tasks", "2", "--epochs", "1"], "grouping": ["--repeat", "1"], "scaling": ["--measure", ""],
         "readers": ["--sizes", "64", "--views", "96"], "scale": ["--views", "400,1200", "--readers", "mmap"],
         "signal": ["--variants", "", "--seeds", "0,1", "--set",
                    "quick:data.n=240,data.size=16,data.splits=[0.6,0.2,0.2],training.epochs=1,training.batch_size=16,"
                    "tasks=[depth_zbuffer,normal,edge_texture]"]}


def run(name: str, options: list[str]) -> subprocess.CompletedProcess:
    """`python -m bench.<name> --json options` in its own process, its time told on stderr."""
    print(f"python -m bench.{name} {' '.join(options)}".rstrip(), end=" ... ", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", "--json", *options], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return done


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    return f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {gpu}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated benchmarks among {','.join(QUICK)}")
    parser.add_argument("--quick", action="store_true", help="small settings: about 3 minutes on 2 cores")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(QUICK)
    for name in names:
        if name not in QUICK:
            parser.error(f"--only: no benchmark {name!r} (there are {', '.join(QUICK)})")

    rows, failed = [], False
    for name in names:
        done = run(name, QUICK[name] if args.quick else [])
        if done.returncode == 0:
            rows += [Row(**row) for row in json.loads(done.stdout.splitlines()[-1])]
        else:
            failed = True
            last = done.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
            rows.append(Row(name, f"failed (exit {done.returncode})", last[0].strip()))
    print(f"{datetime.now():%Y-%m-%d %H:%M}, {machine()}{', --quick settings' if args.quick else ''}\n")
    print_table(rows, ("bench", *COLUMNS, "met"), markdown=args.markdown)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
