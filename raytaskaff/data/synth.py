"""The embedded Taskonomy-like dataset: procedural rooms rendered with every label domain.

All labels of a view come from one ray cast and are encoded as Taskonomy encodes them
(shared/reference/taskonomy-format.md; Omnidata's annotator for the extra domains), so the
relations between tasks are those of the geometry and texture, not planted: normals follow from
the surfaces that also give depth, reshading from normals and distance, occlusion edges from
depth, texture edges and keypoints from the rendered RGB, semantic classes from object shapes.

Views are rendered at `render_size` (default max(128, 2 * size)) and every domain is shrunk to
`size` with the same `resize_raw` the real-Taskonomy converter uses.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from skimage.filters import sobel

from raytaskaff.data import derive
from raytaskaff.data.domains import (
    CURVATURE_MIN_RADIUS, DEPTH_INVALID, NORMAL_INVALID, RESHADING_BACKGROUND, SEGMENT_UNCERTAIN, domain,
)
from raytaskaff.data.render import Hits, cast, shade
from raytaskaff.data.resize import resize_raw
from raytaskaff.data.scene import Building, Camera, sample_building, sample_cameras
from raytaskaff.data.shards import ShardWriter, Manifest
from raytaskaff.errors import DataError

#: Domains the generator renders: RGB plus ten label domains.
SYNTH_DOMAINS = (
    "rgb", "segment_semantic", "keypoints2d", "edge_texture", "depth_zbuffer", "normal",
    "depth_euclidean", "reshading", "edge_occlusion", "principal_curvature", "mask_valid",
)
DEPTH_MAX_METRES = 128.0  # Omnidata's DEPTH_ZBUFFER_MAX_DISTANCE_METERS: 65535 units = 128 m
RESHADE_ENERGY, RESHADE_ALBEDO, RESHADE_HALF_LIFE = 2.0, 0.64, 8.0


@dataclass(frozen=True)
class SynthConfig:
    """n views of size x size pixels, `views_per_building` views (points x views) per building.

    Buildings are assigned to splits by `split_fractions` (train, val, test), so no building is
    in two splits. render_size: resolution of the ray cast (None: max(128, 2 * size)).
    """

    n: int
    size: int = 64
    seed: int = 0
    points_per_building: int = 8
    views_per_point: int = 3
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    render_size: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise DataError(f"n must be at least 1, got {self.n}")
        if not 8 <= self.size <= 1024:
            raise DataError(f"size must be in [8, 1024], got {self.size}")
        if self.render_size is not None and self.render_size < self.size:
            raise DataError(f"render_size {self.render_size} is below size {self.size}")
        if self.points_per_building < 1 or self.views_per_point < 1:
            raise DataError("points_per_building and views_per_point must be at least 1")
        fractions = self.split_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
            raise DataError(f"split_fractions must be three non-negative numbers summing to 1, got {fractions}")

    @property
    def resolution(self) -> int:
        return self.render_size or max(128, 2 * self.size)

    @property
    def views_per_building(self) -> int:
        return self.points_per_building * self.views_per_point

    @property
    def buildings(self) -> int:
        return -(-self.n // self.views_per_building)

    def building_name(self, index: int) -> str:
        return f"synth{self.seed}-{index:05d}"

    def splits(self) -> list[str]:
        """Split of each building: a seeded permutation cut by the fractions (each non-empty
        split that has a positive fraction gets at least one building when there are enough)."""
        count = self.buildings
        sizes = np.floor(np.array(self.split_fractions) * count).astype(int)
        for i in np.argsort(-np.array(self.split_fractions)):
            if sizes.sum() >= count:
                break
            sizes[i] += 1
        for i in range(3):  # take a building from the largest split for an empty one
            if sizes[i] == 0 and self.split_fractions[i] > 0 and sizes.max() > 1:
                sizes[np.argmax(sizes)] -= 1
                sizes[i] += 1
        labels = np.repeat(["train", "val", "test"], sizes)
        order = np.random.default_rng([self.seed, 0x5917]).permutation(count)
        return [str(labels[order[i]]) for i in range(count)]


def _silhouettes(surface: np.ndarray, objects: int) -> np.ndarray:
    """Pixels on a boundary between two surfaces where at least one is an object (id >= 6)."""
    band = np.zeros(surface.shape, dtype=bool)
    for a, b, sa, sb in (
        (surface[1:], surface[:-1], np.s_[1:], np.s_[:-1]),
        (surface[:, 1:], surface[:, :-1], np.s_[:, 1:], np.s_[:, :-1]),
    ):
        edge = (a != b) & ((a >= 6) | (b >= 6))
        band[sa] |= edge
        band[sb] |= edge
    return band


def encode_view(hits: Hits, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Raw (R, R, C) arrays of every synthetic domain from one ray cast, at cast resolution."""
    valid = hits.valid
    res = valid.shape[0]
    scale = res / derive.TASKONOMY_RESOLUTION
    z = np.where(valid, hits.depth, 0.0)
    distance = z * hits.ray_length

    def metres_to_raw(x: np.ndarray) -> np.ndarray:
        raw = np.rint(np.clip(x / DEPTH_MAX_METRES, 0, 1) * 65535)
        return np.where(valid, np.minimum(raw, DEPTH_INVALID - 1), DEPTH_INVALID).astype(np.uint16)[..., None]

    depth_zbuffer = metres_to_raw(z)
    normal_camera = hits.normals @ hits.camera.rotation.T
    normal = np.rint((normal_camera + 1) / 2 * 255).clip(0, 255).astype(np.uint8)
    normal[~valid] = NORMAL_INVALID

    semantic = hits.class_id.copy()
    semantic[_silhouettes(hits.surface, 6)] = SEGMENT_UNCERTAIN

    # Omnidata's reshading: a point lamp at the camera, inverse-square falloff with half-life 8 m
    to_camera = -hits.directions / hits.ray_length[..., None]
    cosine = np.clip(np.einsum("ijk,ijk->ij", hits.normals, to_camera), 0, None)
    falloff = RESHADE_HALF_LIFE / (RESHADE_HALF_LIFE + distance**2)
    shading = np.rint(np.clip(RESHADE_ENERGY * RESHADE_ALBEDO * falloff * cosine, 0, 1) * 255).astype(np.uint8)
    shading[~valid] = RESHADING_BACKGROUND

    limit = 1.0 / CURVATURE_MIN_RADIUS
    k = np.clip(hits.curvature, -limit, limit)
    curvature = np.zeros((res, res, 3), dtype=np.uint8)
    curvature[..., :2] = np.rint((k * CURVATURE_MIN_RADIUS + 1) * 127).astype(np.uint8)
    curvature[~valid] = 0

    # Omnidata's occlusion edges: Sobel of sqrt(depth) on the 16-bit values; steps in depth give
    # 1-px lines whose area average shrinks with the pixel count, hence the R / 512 factor.
    depth_raw = depth_zbuffer[..., 0].astype(np.float64)
    edges3d = sobel(np.sqrt(depth_raw) / 256.0, mask=depth_raw < 65535 - 500) * scale
    gray = derive.luma(rgb)
    return {
        "rgb": rgb,
        "segment_semantic": semantic[..., None],
        "keypoints2d": derive.keypoints2d(gray)[..., None],
        "edge_texture": derive.edge_texture(gray)[..., None],
        "depth_zbuffer": depth_zbuffer,
        "normal": normal,
        "depth_euclidean": metres_to_raw(distance),
        "reshading": np.repeat(shading[..., None], 3, axis=-1),
        "edge_occlusion": np.rint(np.clip(edges3d, 0, 1) * 65535).astype(np.uint16)[..., None],
        "principal_curvature": curvature,
        "mask_valid": (valid.astype(np.uint8) * 255)[..., None],
    }


def render_view(building: Building, camera: Camera, size: int, resolution: int, seed: int) -> dict[str, np.ndarray]:
    """Every synthetic domain of one view, raw-encoded at size x size."""
    hits = cast(building, camera, resolution)
    rng = np.random.default_rng([seed, building.seed, camera.point, camera.view])
    raw = encode_view(hits, shade(building, hits, rng))
    invalid = ~hits.valid
    return {name: resize_raw(name, array, size, invalid) for name, array in raw.items()}


def _render_building(config: SynthConfig, index: int, count: int) -> list[tuple[int, int, float, dict]]:
    building = sample_building(config.seed * 1_000_003 + index)
    cameras = sample_cameras(building, config.points_per_building, config.views_per_point, config.seed)[:count]
    return [(c.point, c.view, c.fov, render_view(building, c, config.size, config.resolution, config.seed)) for c in cameras]


def synth_views(config: SynthConfig, workers: int = 1) -> Iterator[tuple[str, str, int, int, float, dict]]:
    """Yield (split, building, point, view, fov, arrays) for every view, in a fixed order.

    workers > 1 renders buildings in that many processes; the output is identical.
    """
    splits = config.splits()
    jobs = [(i, min(config.views_per_building, config.n - i * config.views_per_building)) for i in range(config.buildings)]

    def emit(index, views):
        for point, view, fov, arrays in views:
            yield splits[index], config.building_name(index), point, view, fov, arrays

    if workers <= 1:
        for index, count in jobs:
            yield from emit(index, _render_building(config, index, count))
        return
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_render_building, [config] * len(jobs), *zip(*jobs))
        for (index, _), views in zip(jobs, results):
            yield from emit(index, views)


def _check_space(out: Path, config: SynthConfig) -> None:
    need = config.n * config.size ** 2 * sum(domain(d).channels * domain(d).np_dtype.itemsize for d in SYNTH_DOMAINS)
    parent = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(parent).free
    if need > free:
        raise DataError(f"{out}: {config.n} views of {config.size} px need {need / 1e9:.3g} GB, "
                        f"{parent} has {free / 1e9:.3g} GB free")


def generate(out: str | os.PathLike, config: SynthConfig, *, format: str = "arrow", workers: int = 1,
             overwrite: bool = False, rows_per_shard: int = 1024, progress: bool = False) -> Manifest:
    """Render `config` into a shard dataset at `out` (atomically); return its manifest. A dataset
    that the disk cannot hold is refused before rendering starts."""
    _check_space(Path(out), config)
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    params["render_size"] = config.resolution
    views = synth_views(config, workers)
    if progress:
        from tqdm import tqdm

        views = tqdm(views, total=config.n, unit="view", desc="rendering")
    with ShardWriter(out, config.size, list(SYNTH_DOMAINS), format=format, rows_per_shard=rows_per_shard,
                     producer={"source": "synthetic", "params": params}, overwrite=overwrite) as writer:
        for split, building, point, view, fov, arrays in views:
            writer.add(split, building, point, view, fov, arrays)
    return writer.manifest
