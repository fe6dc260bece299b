"""What a dataset's columns are: each field of a manifest declares its kind, dtype, per-sample
shape, classes and ignored id, invalid encoding, the field that masks it and its normalisation,
so that tasks, readers and converters need no knowledge of where the data came from.

Kinds (the shape is per sample, H = W = the manifest's size):

| kind | shape | example |
|---|---|---|
| `image` | (H, W, C) uint8 | rgb, the network's input |
| `dense_regression` | (H, W, 1) | depth, edges (raw units; `normalisation` says how to scale) |
| `dense_vector` | (H, W, C) | surface normals, curvature |
| `class_map` | (H, W, 1) integer ids < `classes` | semantic segmentation (`ignore`: an id the loss skips) |
| `class_label` | (1,) integer id < `classes` | the scene class of an image |
| `multi_label` | (K,) 0/1 | CelebA's 40 attributes (`names`: one per entry) |
| `scalar` | (K,) numbers | an age, a count |

`invalid`: the raw value of an entry with no label (Taskonomy's depth 65535); `mask`: the field
whose validity masks this one's loss (Taskonomy's normals are masked by depth). `normalisation`:
"taskonomy" (the reference constants of the domain of that name, `data.transforms`), "dataset"
(standardised by the manifest's train statistics), "none", or {"offset": [...], "scale": [...]}
per channel. Taskonomy's domains are one preset of these fields (`taskonomy_field`), which is how
a manifest that declares no fields (every Taskonomy or synthetic dataset written so far) reads.

Torch-free: the config, the preflight and the converters read fields without loading a model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from raytaskaff.data.domains import ALIASES, DOMAINS, domain
from raytaskaff.errors import DataError

KINDS = ("image", "dense_regression", "dense_vector", "class_map", "class_label", "multi_label", "scalar")
DENSE = ("image", "dense_regression", "dense_vector", "class_map")
DTYPES = ("uint8", "uint16", "int16", "int32", "int64", "float16", "float32")


@dataclass(frozen=True)
class Field:
    """One column of a dataset (see the module docstring for the kinds)."""

    name: str
    kind: str
    dtype: str
    shape: tuple[int, ...]
    classes: int | None = None
    ignore: int | None = None
    invalid: float | None = None
    mask: str | None = None
    normalisation: str | dict = "dataset"
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"field {self.name}"
        if self.kind not in KINDS:
            raise DataError(f"{where}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.dtype not in DTYPES:
            raise DataError(f"{where}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        shape = tuple(self.shape)
        if not shape or min(shape) < 1:
            raise DataError(f"{where}: shape {list(shape)} must be positive")
        if self.dense != (len(shape) == 3):
            raise DataError(f"{where}: a {self.kind} field has shape {'(H, W, C)' if self.dense else '(K,)'}, got {list(shape)}")
        if self.kind in ("class_map", "class_label"):
            if self.classes is None or self.classes < 2:
                raise DataError(f"{where}: a {self.kind} field needs classes >= 2, got {self.classes!r}")
            if shape[-1] != 1:
                raise DataError(f"{where}: a {self.kind} field holds one id per {'pixel' if self.dense else 'sample'}, got shape {list(shape)}")
            if not np.issubdtype(np.dtype(self.dtype), np.integer):
                raise DataError(f"{where}: class ids need an integer dtype, got {self.dtype}")
        if self.ignore is not None and (self.classes is None or not 0 <= self.ignore < self.classes):
            raise DataError(f"{where}: ignore {self.ignore!r} must be one of the class ids 0..{(self.classes or 1) - 1}")
        if self.names and len(self.names) != shape[-1]:
            raise DataError(f"{where}: {len(self.names)} names for {shape[-1]} entries")
        norm = self.normalisation
        if isinstance(norm, dict):
            if set(norm) != {"offset", "scale"} or len(norm["offset"]) != len(norm["scale"]) or min(map(abs, norm["scale"])) == 0:
                raise DataError(f"{where}: normalisation {{offset: [...], scale: [...]}} per channel, non-zero scales, got {norm}")
        elif norm not in ("taskonomy", "dataset", "none"):
            raise DataError(f"{where}: normalisation {norm!r} is not one of taskonomy, dataset, none (or offset/scale)")
        if norm == "taskonomy" and self.name not in DOMAINS:
            raise DataError(f"{where}: normalisation 'taskonomy' is for Taskonomy's domains only")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "names", tuple(self.names))

    @property
    def dense(self) -> bool:
        """Whether the field has a value per pixel (else one per sample: an image-level label)."""
        return self.kind in DENSE

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def entries(self) -> int:
        """Values per sample (H * W * C)."""
        return math.prod(self.shape)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v not in (None, ()) and k != "name"}
        out["shape"] = list(self.shape)
        if self.names:
            out["names"] = list(self.names)
        return out

    @classmethod
    def from_dict(cls, name: str, data: dict) -> Field:
        if not isinstance(data, dict):
            raise DataError(f"field {name}: expected a mapping, got {data!r}")
        known = {f for f in cls.__dataclass_fields__ if f != "name"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"field {name}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        try:
            return cls(name=name, **{**data, "shape": tuple(data.get("shape", ()))})
        except TypeError as e:
            raise DataError(f"field {name}: {e}") from None

    def check(self, array: np.ndarray) -> None:
        """DataError unless `array` is one sample of this field."""
        if array.dtype != self.np_dtype:
            raise DataError(f"{self.name}: dtype {array.dtype}, expected {self.dtype}")
        if array.shape != self.shape:
            raise DataError(f"{self.name}: shape {array.shape}, expected {self.shape}")


def taskonomy_field(name: str, size: int) -> Field:
    """The field of Taskonomy domain `name` (an old alias accepted) at `size` px."""
    spec = domain(name)
    return Field(spec.name, spec.kind, spec.dtype, (size, size, spec.channels), classes=spec.classes, ignore=spec.ignore,
                 invalid=spec.invalid, mask=spec.mask, normalisation="taskonomy")


def canonical(name: str) -> str:
    """A column's name, with Taskonomy's old domain spellings mapped to their current names."""
    return ALIASES.get(name, name)
