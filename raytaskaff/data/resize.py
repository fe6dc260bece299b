"""Resizing raw Taskonomy encodings without corrupting them.

Real Taskonomy views are 512x512 and training uses 32-256 px; the synthetic generator renders at a
higher resolution than it stores. Both shrink labels here, per domain (`Domain.resize`):
class maps by nearest neighbour (averaging ids invents classes), depth by averaging valid pixels
only, normals by averaging unit vectors and re-normalising, everything else by box averaging.
A pixel whose source block touches an invalid pixel is invalid (depth 65535, normal 128).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from raytaskaff.data.domains import domain


@lru_cache(maxsize=64)
def _box_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: row i averages the inputs covering [i, i+1) * n_in / n_out."""
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    hi = lo + scale
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    weights = overlap / scale
    weights.flags.writeable = False
    return weights


def box_average(x: np.ndarray, size: int) -> np.ndarray:
    """Area-average (H, W, C) float array `x` to (size, size, C); exact for any ratio."""
    h, w, c = x.shape
    if h % size == 0 and w % size == 0:  # integer factor: add the strided slices of each block
        fh, fw = h // size, w // size
        rows = x.reshape(size, fh, w * c).sum(axis=1).reshape(size, size, fw, c)
        out = rows[:, :, 0].copy()
        for k in range(1, fw):  # a loop over the few columns of a block beats a strided reduction
            out += rows[:, :, k]
        return out / (fh * fw)
    rows = (_box_weights(h, size) @ x.reshape(h, w * c)).reshape(size, w, c)
    return np.einsum("jw,iwc->ijc", _box_weights(w, size), rows)


def nearest(x: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of (H, W, C) `x`, sampling each output pixel's centre."""
    rows = ((np.arange(size) + 0.5) * x.shape[0] / size).astype(np.intp)
    cols = ((np.arange(size) + 0.5) * x.shape[1] / size).astype(np.intp)
    return x[rows[:, None], cols[None, :]]


def _round_to(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(x), info.min, info.max).astype(dtype)


def resize_raw(name: str, raw: np.ndarray, size: int, invalid: np.ndarray | None = None) -> np.ndarray:
    """Resize the raw (H, W, C) encoding of domain `name` to (size, size, C), same dtype.

    invalid: optional (H, W) bool mask of pixels with no geometry (from depth); for depth it
    defaults to `raw == 65535`, for normals to pixels equal to (128, 128, 128).
    """
    spec = domain(name)
    if raw.shape[:2] == (size, size):
        return raw
    if spec.resize == "nearest":
        return nearest(raw, size)
    if spec.resize == "area":
        return _round_to(box_average(raw.astype(np.float64), size), spec.np_dtype)
    if spec.resize == "depth":
        bad = raw[..., 0] == spec.invalid if invalid is None else invalid
        good = (~bad)[..., None].astype(np.float64)
        total = box_average(raw.astype(np.float64) * good, size)
        weight = box_average(good, size)
        touched = box_average(bad[..., None].astype(np.float64), size) > 1e-9
        out = _round_to(total / np.maximum(weight, 1e-12), spec.np_dtype)
        out[touched[..., 0]] = spec.invalid
        return out
    if spec.resize == "normal":
        bad = np.all(raw == spec.invalid, axis=-1) if invalid is None else invalid
        vectors = raw.astype(np.float64) / 255.0 * 2.0 - 1.0
        vectors[bad] = 0.0
        mean = box_average(vectors, size)
        mean /= np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
        out = _round_to((mean + 1.0) / 2.0 * 255.0, spec.np_dtype)
        touched = box_average(bad[..., None].astype(np.float64), size) > 1e-9
        out[touched[..., 0]] = spec.invalid
        return out
    raise AssertionError(f"unhandled resize mode {spec.resize!r}")
