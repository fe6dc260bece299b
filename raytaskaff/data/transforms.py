"""The one load-time transform from raw Taskonomy encodings to training targets.

Shards keep raw values; this module turns a batch of them into what a network consumes, for real
and synthetic data alike, with the constants of the reference setup (tstandley/taskgrouping
`taskonomy_loader.py`, reference section 8.1). Masks come from the depth encoding itself:
a pixel is valid when its 16-bit depth is below 8192 (16 m), which also excludes 65535. The
reference loader decoded 16-bit PNGs through ToTensor, so 65535 wrapped to -1 and slipped past its
`< 8192` test; here raw values stay unsigned.

Shapes: raw batches are (B, H, W, C) uint8/uint16 tensors (as stored); targets are (B, C, H, W)
float32, class maps (B, H, W) int64, masks (B, 1, H, W) bool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raytaskaff.data.domains import SEGMENT_CLASSES, domain

DEPTH_VALID_BELOW = 8192

#: (offset, scale) per domain: target = (raw_scaled - offset) / scale, raw_scaled = raw / divisor.
_AFFINE: dict[str, tuple[float, tuple[float, ...], tuple[float, ...]]] = {
    # name: (divisor, offset per channel, scale per channel)
    "depth_zbuffer": (1.0, (1500.0,), (1000.0,)),
    "depth_euclidean": (1.0, (1500.0,), (1000.0,)),
    "keypoints2d": (1.0, (50.0,), (100.0,)),
    "edge_texture": (1.0, (718.0,), (1070.0,)),
    "edge_occlusion": (1.0, (56.0248,), (239.1265,)),
    "reshading": (255.0, (0.4962,), (0.2846,)),
    "principal_curvature": (255.0, (0.5175, 0.4987), (0.1373, 0.0359)),
    "normal": (255.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "rgb": (255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "mask_valid": (255.0, (0.0,), (1.0,)),
    "keypoints3d": (65535.0, (0.0,), (1.0,)),
}
#: Domains whose decoding is geometric or already in [0, 1]: never standardised.
_DECODED = {"normal", "rgb", "mask_valid"}
#: Domains whose loss is masked by valid depth.
_DEPTH_MASKED = {"depth_zbuffer", "depth_euclidean", "normal"}


@dataclass(frozen=True)
class Target:
    """A normalised label: `value` (B, C, H, W) float32 or (B, H, W) int64 for class maps, and an
    optional (B, 1, H, W) bool `mask` of the pixels the loss should count."""

    value: torch.Tensor
    mask: torch.Tensor | None = None


def channels_first(raw: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, C, H, W) view (channels_last memory, which convolutions like)."""
    return raw.permute(0, 3, 1, 2)


def depth_mask(depth_raw: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 1) raw 16-bit depth -> (B, 1, H, W) bool, True where depth is valid."""
    return channels_first(depth_raw.to(torch.int32) < DEPTH_VALID_BELOW)


def rgb_input(raw: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1], no mean/std (the reference setup)."""
    return channels_first(raw).float().div_(255.0)


def _affine(name: str, stats: dict | None) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """(divisor, offset, scale) of domain `name`: target = (raw / divisor - offset) / scale."""
    divisor, offset, scale = _AFFINE[name]
    if stats and name in stats and name not in _DECODED:
        n = len(offset)
        offset = tuple(m / divisor for m in stats[name]["mean"][:n])
        scale = tuple(max(s, 1e-6) / divisor for s in stats[name]["std"][:n])
    return divisor, offset, scale


def _per_channel(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def normalise(name: str, raw: torch.Tensor, depth_raw: torch.Tensor | None = None, stats: dict | None = None) -> Target:
    """Target for domain `name` from its raw (B, H, W, C) batch.

    depth_raw: the view's raw depth_zbuffer batch, to mask depth and normals. Without it the
    domain's own encoding decides (depth: < 8192; normals: not (128, 128, 128)).
    stats: a manifest's `stats` ({domain: {"mean": [...], "std": [...]}} of raw train values);
    when it covers `name`, scalar domains are standardised with it instead of the reference
    constants (synthetic statistics differ from Taskonomy's). Normals and RGB keep their decoding.
    """
    spec = domain(name)
    if spec.resize == "nearest" and spec.name != "mask_valid":
        return Target(raw[..., 0].long(), None)  # class ids; the loss ignores id 0
    divisor, offset, scale = _affine(spec.name, stats)
    x = channels_first(raw).float()
    if spec.name == "reshading":  # stored as three equal channels; the reference takes their mean
        x = x.mean(dim=1, keepdim=True)
    if spec.name == "principal_curvature":  # the third channel is unused (always 0)
        x = x[:, :2]
    value = (x / divisor - _per_channel(offset, x)) / _per_channel(scale, x)
    mask = None
    if spec.name in _DEPTH_MASKED:
        if depth_raw is not None:
            mask = depth_mask(depth_raw)
        elif spec.name == "normal":
            mask = channels_first((raw != 128).any(dim=-1, keepdim=True))
        else:
            mask = depth_mask(raw)
    return Target(value.contiguous(memory_format=torch.channels_last), mask)


def denormalise(name: str, value: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Inverse of `normalise` for scalar domains: (B, C, H, W) targets or predictions -> raw units."""
    divisor, offset, scale = _affine(domain(name).name, stats)
    return (value * _per_channel(scale, value) + _per_channel(offset, value)) * divisor


def channels(name: str) -> int:
    """Channels of the normalised target of `name` (class maps: the number of classes)."""
    spec = domain(name)
    if spec.name == "segment_semantic":
        return SEGMENT_CLASSES
    if spec.name == "reshading":
        return 1
    if spec.name == "principal_curvature":
        return 2
    return spec.channels
