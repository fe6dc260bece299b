"""A small dataset of declared fields with planted structure, for tests of fields and families."""

from __future__ import annotations

import numpy as np

from raytaskaff.data.fields import Field
from raytaskaff.data.shards import ShardWriter

FIELDS = [
    Field("rgb", "image", "uint8", (16, 16, 3)),
    # entry 0: the top half is bright; entry 1: the left half is bright; entry 2: coin flips (unlearnable)
    Field("attributes", "multi_label", "uint8", (3,), names=("top", "left", "coin")),
    Field("colour", "class_label", "uint8", (1,), classes=3),
    Field("brightness", "scalar", "float32", (1,)),
    Field("bright", "class_map", "uint8", (16, 16, 1), classes=2),
]


def sample(rng: np.random.Generator) -> dict[str, np.ndarray]:
    top, left, coin = rng.integers(0, 2, 3)
    colour = int(rng.integers(0, 3))
    image = rng.integers(0, 60, (16, 16, 3)).astype(np.int32)
    image[:8] += 150 * top
    image[:, :8] += 90 * left
    image[..., colour] += 40
    image = np.clip(image, 0, 255).astype(np.uint8)
    return {
        "rgb": image,
        "attributes": np.array([top, left, coin], dtype=np.uint8),
        "colour": np.array([colour], dtype=np.uint8),
        "brightness": np.array([image.mean()], dtype=np.float32),
        "bright": (image.mean(axis=-1, keepdims=True) > 120).astype(np.uint8),
    }


def write(out, n: int = 160, seed: int = 0):
    """n samples: 70% train, 15% val, 15% test, one person (group) per 4 samples."""
    rng = np.random.default_rng(seed)
    with ShardWriter(out, 16, fields=FIELDS, group="person", meta={"image": "string"}, rows_per_shard=64) as w:
        for i in range(n):
            split = "train" if i < 0.7 * n else "val" if i < 0.85 * n else "test"
            w.add_sample(split, str(i // 4), sample(rng), meta={"image": f"{i:06d}.jpg"})
    return w.manifest
