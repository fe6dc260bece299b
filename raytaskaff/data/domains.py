"""The Taskonomy label domains: how each is encoded on disk, resized and turned into a target.

One `Domain` per Taskonomy domain name. Raw encodings are the ones Taskonomy ships (see
shared/reference/taskonomy-format.md, section 4): shards store them unchanged and
`raytaskaff.data.transforms` turns them into training targets at load time, for real and
synthetic data alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raytaskaff.errors import DataError

#: Value of an invalid (no geometry) pixel in 16-bit depth images.
DEPTH_INVALID = 65535
#: Depth units: Taskonomy stores 1/512 m per unit.
DEPTH_UNITS_PER_METRE = 512.0
#: Encoded normal of an invalid pixel: the zero vector, (128, 128, 128).
NORMAL_INVALID = 128
#: Semantic id of "uncertain" pixels, ignored by the loss.
SEGMENT_UNCERTAIN = 0
SEGMENT_BACKGROUND = 1
SEGMENT_CLASSES = 18  # ids 0..17, 0 = uncertain


@dataclass(frozen=True)
class Domain:
    """How one domain is stored and what its training target is.

    name: Taskonomy domain name (folder name on disk).
    kind: the `data.fields` kind of its field ("image" for the network's input).
    dtype: numpy dtype of the raw array.
    channels: C of the raw (H, W, C) array.
    resize: how to shrink it: "area" (box average), "depth" (average of valid pixels, invalid where
        any source pixel is invalid), "normal" (average of decoded vectors, re-normalised, invalid
        where any source pixel is invalid) or "nearest" (class maps).
    invalid: raw value of a pixel with no geometry, or None when the domain has none.
    file_names: spellings of the domain in file names (`segmentsemantic` for semantics).
    classes: for a class map that a task learns, the number of class ids (every value is below it).
    ignore: for a class map, the id its loss skips ("uncertain").
    mask: the domain whose valid pixels mask this one's loss (depth_zbuffer for depth and normals),
        and whose invalid pixels the converter passes to `resize_raw`.
    affine: (divisor, offset per channel, scale per channel) of the reference transform
        (tstandley/taskgrouping `taskonomy_loader.py`): target = (raw / divisor - offset) / scale,
        one offset per target channel; None for a map of ids, which is its own target.
    standardise: whether a dataset's statistics replace the reference offset and scale (not for a
        geometric decoding or values already in [0, 1]).
    grey: three equal channels that hold one grey value: a grey file is repeated to three, and
        the target is their mean (the reference's reshading).
    """

    name: str
    kind: str
    dtype: str
    channels: int
    resize: str
    invalid: int | None = None
    file_names: tuple[str, ...] = ()
    classes: int | None = None
    ignore: int | None = None
    mask: str | None = None
    affine: tuple[float, tuple[float, ...], tuple[float, ...]] | None = None
    standardise: bool = True
    grey: bool = False

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def target_channels(self) -> int:
        """C of the normalised target (a class map: its number of classes): one per offset of the
        reference transform, which keeps principal curvature's k1, k2 of its three channels."""
        if self.affine is not None:
            return len(self.affine[1])
        return self.classes or self.channels

    def spellings(self) -> tuple[str, ...]:
        return self.file_names or (self.name,)


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain("rgb", "image", "uint8", 3, "area", affine=(255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), standardise=False),
        Domain("depth_zbuffer", "dense_regression", "uint16", 1, "depth", DEPTH_INVALID, mask="depth_zbuffer",
               affine=(1.0, (1500.0,), (1000.0,))),
        Domain("depth_euclidean", "dense_regression", "uint16", 1, "depth", DEPTH_INVALID, mask="depth_zbuffer",
               affine=(1.0, (1500.0,), (1000.0,))),
        Domain("normal", "dense_vector", "uint8", 3, "normal", NORMAL_INVALID, mask="depth_zbuffer",
               affine=(255.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), standardise=False),
        Domain("segment_semantic", "class_map", "uint8", 1, "nearest", SEGMENT_UNCERTAIN,
               file_names=("segmentsemantic", "segment_semantic"), classes=SEGMENT_CLASSES, ignore=SEGMENT_UNCERTAIN),
        Domain("edge_texture", "dense_regression", "uint16", 1, "area", affine=(1.0, (718.0,), (1070.0,))),
        Domain("keypoints2d", "dense_regression", "uint16", 1, "area", affine=(1.0, (50.0,), (100.0,))),
        Domain("edge_occlusion", "dense_regression", "uint16", 1, "area", affine=(1.0, (56.0248,), (239.1265,))),
        Domain("reshading", "dense_vector", "uint8", 3, "area", affine=(255.0, (0.4962,), (0.2846,)), grey=True),
        Domain("principal_curvature", "dense_vector", "uint8", 3, "area",
               affine=(255.0, (0.5175, 0.4987), (0.1373, 0.0359))),
        Domain("keypoints3d", "dense_regression", "uint16", 1, "area", affine=(65535.0, (0.0,), (1.0,))),
        Domain("segment_unsup2d", "dense_regression", "uint8", 1, "nearest"),
        Domain("segment_unsup25d", "dense_regression", "uint8", 1, "nearest"),
        Domain("mask_valid", "dense_regression", "uint8", 1, "nearest", affine=(255.0, (0.0,), (1.0,)), standardise=False),
    )
}

#: The domain every view carries: the network's input image, whose resolution its labels share.
INPUT = "rgb"

#: Old internal names still found in some copies of Taskonomy (alexsax/midlevel-reps).
ALIASES: dict[str, str] = {
    "edge2d": "edge_texture",
    "keypoint2d": "keypoints2d",
    "keypoint3d": "keypoints3d",
    "rgb2depth": "depth_zbuffer",
    "depth": "depth_zbuffer",
    "rgb2mist": "depth_euclidean",
    "mist": "depth_euclidean",
    "rgb2sfnorm": "normal",
    "segmentsemantic": "segment_semantic",
    "edge3d": "edge_occlusion",
    "edge": "edge_occlusion",
    "reshade": "reshading",
    "curvature": "principal_curvature",
    "segment2d": "segment_unsup2d",
    "segment25d": "segment_unsup25d",
}

#: Background value of reshading (Blender's default world horizon, 0.0509, under the Raw transform).
RESHADING_BACKGROUND = 13
#: Principal curvatures are clipped to +-1/r with r = 0.03 m and stored as round((k r + 1) 127).
CURVATURE_MIN_RADIUS = 0.03

#: The five tasks of the reference study.
REFERENCE_DOMAINS = ("segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal")


def domain(name: str) -> Domain:
    """The domain called `name` (an old alias is accepted); DataError if there is none."""
    canonical = ALIASES.get(name, name)
    try:
        return DOMAINS[canonical]
    except KeyError:
        known = ", ".join(DOMAINS)
        raise DataError(f"unknown domain {name!r} (known: {known})") from None


def check_raw(name: str, array: np.ndarray, size: int | None = None) -> None:
    """Raise DataError unless `array` is a raw (H, W, C) array of domain `name`."""
    spec = domain(name)
    if array.dtype != spec.np_dtype:
        raise DataError(f"{name}: dtype {array.dtype}, expected {spec.dtype}")
    if array.ndim != 3 or array.shape[2] != spec.channels:
        raise DataError(f"{name}: shape {array.shape}, expected (H, W, {spec.channels})")
    if size is not None and array.shape[:2] != (size, size):
        raise DataError(f"{name}: shape {array.shape}, expected ({size}, {size}, {spec.channels})")
    if spec.classes is not None and array.size and int(array.max()) >= spec.classes:
        raise DataError(f"{name}: class id {int(array.max())} out of range (ids are 0..{spec.classes - 1})")
