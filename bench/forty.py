"""The shipped celeba-40 sweep end to end at tiny size: a fake CelebA in CelebA's own layout
(tests/fake_celeba.py: 40 attributes, three drawn into the pixels), the folder converter, then
sweeps/celeba-40.yaml with its own task names and settings (every scorer, label injection on its
budget, TensorBoard, grouping with K = 2, 3, 4) at 1 seed, 1 epoch, on this machine's CPUs, bundled
32 networks to a trial as on a GPU (CPUs do not stack them).

    python -m bench.forty [--images 600] [--size 32] [--work out/bench-forty]

Prints the dry run, then the sweep's own output; the sweep's stage times and the report's path
end it. A second call reuses the converted data and the stored runs (delete --work to start over).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def fake_celeba(work: Path, images: int, size: int) -> Path:
    """The converted fake CelebA under `work` (made once)."""
    data = work / "data"
    if (data / "manifest.json").exists():
        return data
    sys.path.insert(0, str(ROOT / "tests"))
    import fake_celeba as fake

    root = work / "celeba"
    if not root.exists():
        fake.write(root, n=images)
    subprocess.run([sys.executable, "-m", "raytaskaff.data", "folder", "--images", str(root / "img_align_celeba"),
                    "--labels", str(root / "list_attr_celeba.txt"), "--split", str(root / "list_eval_partition.txt"),
                    "--group", str(root / "identity_CelebA.txt"), "--size", str(size), "--out", str(data)], check=True)
    return data


def tiny_config(work: Path, data: Path) -> Path:
    """celeba-40's config with its data, 1 seed, 1 epoch, small batches and probes, on CPUs."""
    raw = yaml.safe_load((ROOT / "sweeps" / "celeba-40.yaml").read_text())
    raw["data"]["path"] = str(data)
    raw["seeds"] = [0]
    raw["training"].update(epochs=1, batch_size=32, amp=False)
    raw["scorers"].update(ias={"images": 16}, rsa={"images": 32})
    raw["resources"].update(cpus_per_run=1, gpus_per_run=0, scorer_actors=2, bundle=32)
    raw["out"] = str(work / "out")
    path = work / "tiny-celeba-40.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forty", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="fake CelebA images")
    parser.add_argument("--size", type=int, default=32, help="converted image size")
    parser.add_argument("--work", default="out/bench-forty", help="folder of the data, config and sweep output")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    config = tiny_config(work, fake_celeba(work, args.images, args.size))
    for extra in (["--dry-run"], []):
        done = subprocess.run([sys.executable, "-m", "raytaskaff.sweep", "--config", str(config), *extra])
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
