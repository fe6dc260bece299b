"""A small fake CelebA tree (never real images): JPEGs with planted attributes and CelebA's three
text files, with one corrupt image and one listed image missing from the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male "
    "Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()
CORRUPT, MISSING = "000007.jpg", "000011.jpg"


def write(root: Path, n: int = 72, seed: int = 0) -> dict:
    """CelebA's layout under `root`; returns {file: (attribute row of -1/1, split id, identity)}.
    Black_Hair darkens the top rows, Wearing_Hat paints a bright band over them, Smiling a bright
    mouth patch; the other attributes are coin flips. Identities hold 3 images each; splits are
    by identity (0 train, 1 val, 2 test)."""
    rng = np.random.default_rng(seed)
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    rows = {}
    for i in range(1, n + 1):
        name = f"{i:06d}.jpg"
        attrs = rng.choice([-1, 1], size=len(ATTRIBUTES))
        identity = 100 + (i - 1) // 3
        split = 0 if i <= 0.6 * n else 1 if i <= 0.8 * n else 2
        rows[name] = (attrs, split, identity)
        if name == MISSING:
            continue
        if name == CORRUPT:
            (images / name).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
            continue
        face = rng.integers(90, 150, (24, 20, 3)).astype(np.int32)  # 20 wide, 24 high: cropped to 20 x 20
        if attrs[ATTRIBUTES.index("Black_Hair")] > 0:
            face[2:9] -= 80
        if attrs[ATTRIBUTES.index("Wearing_Hat")] > 0:
            face[2:7] = 250
        if attrs[ATTRIBUTES.index("Smiling")] > 0:
            face[15:19, 5:15] = 255
        Image.fromarray(np.clip(face, 0, 255).astype(np.uint8)).save(images / name, quality=95)
    lines = [str(n), " ".join(ATTRIBUTES)] + [f"{name} " + " ".join(f"{v:2d}" for v in a) for name, (a, _, _) in rows.items()]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{name} {s}\n" for name, (_, s, _) in rows.items()))
    (root / "identity_CelebA.txt").write_text("".join(f"{name} {ident}\n" for name, (_, _, ident) in rows.items()))
    return rows
