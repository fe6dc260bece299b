"""The one load-time transform from raw Taskonomy encodings to training targets.

Shards keep raw values; this module turns a batch of them into what a network consumes, for real
and synthetic data alike, with the constants of the reference setup (tstandley/taskgrouping
`taskonomy_loader.py`, reference section 8.1) that each `Domain` carries. Masks come from the
depth encoding itself: a pixel is valid when its 16-bit depth is below 8192 (16 m), which also
excludes 65535. The reference loader decoded 16-bit PNGs through ToTensor, so 65535 wrapped to -1
and slipped past its `< 8192` test; here raw values stay unsigned.

Shapes: raw batches are (B, H, W, C) uint8/uint16 tensors (as stored); targets are (B, C, H, W)
float32, class maps (B, H, W) int64, masks (B, 1, H, W) bool.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raytaskaff.data.domains import Domain, domain

DEPTH_VALID_BELOW = 8192


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


def _affine(spec: Domain, stats: dict | None) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """(divisor, offset, scale) of domain `spec`: target = (raw / divisor - offset) / scale."""
    if spec.affine is None:  # a map of ids has none
        raise KeyError(spec.name)
    divisor, offset, scale = spec.affine
    if stats and spec.name in stats and spec.standardise:
        n = len(offset)
        offset = tuple(m / divisor for m in stats[spec.name]["mean"][:n])
        scale = tuple(max(s, 1e-6) / divisor for s in stats[spec.name]["std"][:n])
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
    if spec.affine is None:
        return Target(raw[..., 0].long(), None)  # class ids; the loss ignores id 0
    divisor, offset, scale = _affine(spec, stats)
    x = channels_first(raw).float()
    if spec.grey:  # stored as three equal channels; the reference takes their mean
        x = x.mean(dim=1, keepdim=True)
    elif spec.target_channels < spec.channels:  # principal curvature's third channel is unused (always 0)
        x = x[:, :spec.target_channels]
    value = (x / divisor - _per_channel(offset, x)) / _per_channel(scale, x)
    mask = None
    if spec.mask is not None:
        mask = depth_mask(depth_raw) if depth_raw is not None else _own_mask(spec, raw)
    return Target(value.contiguous(memory_format=torch.channels_last), mask)


def _own_mask(spec: Domain, raw: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) bool valid pixels of a masked domain by its own raw (B, H, W, C) encoding: depth
    below 8192, else not the domain's invalid value (normals: not (128, 128, 128))."""
    if spec.resize == "depth":
        return depth_mask(raw)
    return channels_first((raw != spec.invalid).any(dim=-1, keepdim=True))


def denormalise(name: str, value: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Inverse of `normalise` for scalar domains: (B, C, H, W) targets or predictions -> raw units."""
    divisor, offset, scale = _affine(domain(name), stats)
    return (value * _per_channel(scale, value) + _per_channel(offset, value)) * divisor


def channels(name: str) -> int:
    """Channels of the normalised target of `name` (class maps: the number of classes)."""
    return domain(name).target_channels
