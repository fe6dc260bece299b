"""Procedural indoor scenes: a room with windows, furniture-like primitives, lights and cameras.

A *building* is one room with its objects, materials and lights, drawn from one seed. Its views
are pinhole cameras placed inside it, so every view of a building shares geometry and texture
(as Taskonomy's points and views of one building do) and splits never share a building.

World frame: metres, y up; the room spans [0, size_x] x [0, height] x [0, size_z].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# (name, primitive, class id, size ranges in metres).
# box sizes are full extents (x, y, z); sphere (radius,); cylinder (radius, height).
# The class follows from the shape and its proportions, as pseudo-labels follow object
# appearance in Taskonomy: tall boxes are refrigerators, flat low ones beds.
ARCHETYPES: tuple[tuple[str, str, int, tuple[tuple[float, float], ...]], ...] = (
    ("chair", "box", 3, ((0.4, 0.6), (0.8, 1.0), (0.4, 0.6))),
    ("couch", "box", 4, ((1.6, 2.2), (0.7, 0.9), (0.8, 1.0))),
    ("bed", "box", 6, ((1.8, 2.1), (0.4, 0.6), (1.4, 1.8))),
    ("dining table", "box", 7, ((1.2, 1.8), (0.7, 0.8), (0.8, 1.0))),
    ("tv", "box", 9, ((0.9, 1.4), (0.5, 0.8), (0.06, 0.12))),
    ("oven", "box", 11, ((0.55, 0.7), (0.85, 0.95), (0.55, 0.65))),
    ("refrigerator", "box", 14, ((0.7, 0.9), (1.7, 2.0), (0.6, 0.75))),
    ("sink", "box", 13, ((0.5, 0.8), (0.8, 0.95), (0.45, 0.6))),
    ("potted plant", "sphere", 5, ((0.25, 0.45),)),
    ("clock", "sphere", 16, ((0.12, 0.2),)),
    ("bottle", "cylinder", 2, ((0.05, 0.09), (0.25, 0.4))),
    ("vase", "cylinder", 17, ((0.1, 0.18), (0.3, 0.6))),
    ("toilet", "cylinder", 8, ((0.2, 0.28), (0.4, 0.5))),
)

PATTERNS = ("checker", "stripes", "noise", "plain")


@dataclass(frozen=True)
class Material:
    """A procedural texture: two colours mixed by a pattern of period `scale` metres."""

    colour_a: np.ndarray  # (3,) linear RGB in [0, 1]
    colour_b: np.ndarray
    pattern: str
    scale: float
    angle: float
    lattice: np.ndarray  # (32, 32) value-noise lattice in [0, 1]


@dataclass(frozen=True)
class Primitive:
    """One object: `kind` is "box" (axis-aligned after a yaw), "sphere" or "cylinder" (vertical)."""

    kind: str
    class_id: int
    centre: np.ndarray  # (3,) box/sphere centre; cylinder: centre of its base
    dims: np.ndarray  # box: half extents (3,); sphere: (radius,); cylinder: (radius, height)
    yaw: float
    material: Material


@dataclass(frozen=True)
class Window:
    """An opening in a wall with nothing behind it: pixels seeing it have no geometry."""

    wall: int  # 0: x = 0, 1: x = size_x, 2: z = 0, 3: z = size_z
    u: tuple[float, float]  # horizontal extent along the wall, metres
    v: tuple[float, float]  # vertical extent, metres


@dataclass(frozen=True)
class Building:
    seed: int
    size: np.ndarray  # (3,) room extents x, y (height), z
    room_materials: tuple[Material, ...]  # floor, ceiling, wall x=0, x=X, z=0, z=Z
    windows: tuple[Window, ...]
    objects: tuple[Primitive, ...]
    lights: np.ndarray  # (L, 3) positions
    light_power: np.ndarray  # (L,)
    ambient: float


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: `rotation` maps world vectors to the camera frame (x right, y down, z forward)."""

    position: np.ndarray
    rotation: np.ndarray  # (3, 3)
    fov: float  # full field of view, radians (square images)
    point: int = 0
    view: int = 0
    extras: dict = field(default_factory=dict)


def _material(rng: np.random.Generator, muted: bool) -> Material:
    hue = rng.uniform(0.15, 0.95, size=3)
    if muted:  # walls, floors and ceilings are paler and less saturated than objects
        hue = 0.55 + 0.4 * hue.mean() + 0.25 * (hue - hue.mean())
    contrast = rng.uniform(0.25, 0.7)
    return Material(
        colour_a=np.clip(hue, 0, 1),
        colour_b=np.clip(hue * (1.0 - contrast), 0, 1),
        pattern=str(rng.choice(PATTERNS, p=(0.3, 0.25, 0.3, 0.15))),
        scale=float(rng.uniform(0.08, 0.6)),
        angle=float(rng.uniform(0, np.pi)),
        lattice=rng.uniform(0, 1, size=(32, 32)),
    )


def sample_building(seed: int) -> Building:
    """Draw the room, windows, objects and lights of building `seed` (deterministic)."""
    rng = np.random.default_rng([seed, 0x5CE7E])
    size = np.array([rng.uniform(3.5, 8.0), rng.uniform(2.5, 3.3), rng.uniform(3.5, 8.0)])
    room_materials = tuple(_material(rng, muted=True) for _ in range(6))
    windows = []
    for _ in range(rng.integers(0, 3)):
        wall = int(rng.integers(4))
        length = size[2] if wall < 2 else size[0]
        width = rng.uniform(0.6, min(2.0, length - 0.8))
        start = rng.uniform(0.3, length - width - 0.3)
        bottom = rng.uniform(0.7, 1.1)
        windows.append(Window(wall, (start, start + width), (bottom, min(bottom + rng.uniform(0.8, 1.4), size[1] - 0.2))))
    objects = []
    for _ in range(rng.integers(3, 9)):
        name, kind, class_id, ranges = ARCHETYPES[rng.integers(len(ARCHETYPES))]
        dims = np.array([rng.uniform(lo, hi) for lo, hi in ranges])
        reach = 0.5 * dims.max() if kind == "box" else dims[0]
        x = rng.uniform(reach + 0.05, size[0] - reach - 0.05)
        z = rng.uniform(reach + 0.05, size[2] - reach - 0.05)
        if kind == "box":
            centre, dims = np.array([x, dims[1] / 2, z]), dims / 2
        elif kind == "sphere":
            lift = rng.choice([0.0, rng.uniform(0.4, 1.2)])  # on the floor or on a stand
            centre = np.array([x, dims[0] + lift, z])
        else:
            centre = np.array([x, 0.0, z])
        objects.append(Primitive(kind, class_id, centre, dims, float(rng.uniform(0, np.pi)), _material(rng, muted=False)))
    n_lights = int(rng.integers(1, 3))
    lights = np.stack([rng.uniform([0.5, size[1] - 0.4, 0.5], [size[0] - 0.5, size[1] - 0.1, size[2] - 0.5]) for _ in range(n_lights)])
    return Building(
        seed=seed, size=size, room_materials=room_materials, windows=tuple(windows), objects=tuple(objects),
        lights=lights, light_power=rng.uniform(0.6, 1.1, size=n_lights) / n_lights ** 0.5, ambient=float(rng.uniform(0.15, 0.3)),
    )


def _inside_object(p: np.ndarray, objects: tuple[Primitive, ...], margin: float) -> bool:
    for o in objects:
        if o.kind == "sphere" and np.linalg.norm(p - o.centre) < o.dims[0] + margin:
            return True
        if o.kind == "cylinder":
            if np.hypot(*(p - o.centre)[[0, 2]]) < o.dims[0] + margin and p[1] < o.centre[1] + o.dims[1] + margin:
                return True
        if o.kind == "box" and np.all(np.abs(p - o.centre) < np.linalg.norm(o.dims) + margin):
            return True
    return False


def rotation(yaw: float, pitch: float) -> np.ndarray:
    """World-to-camera rotation of a camera looking along yaw (about y) and pitch (up > 0), no roll."""
    forward = np.array([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)])
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def sample_cameras(building: Building, points: int, views: int, seed: int) -> list[Camera]:
    """`points` camera locations in the room, each seen from `views` directions.

    Each view looks roughly at an object or at a random spot of the room (Taskonomy's cameras look
    at points of interest), with field of view ~ U(45, 75) degrees (Taskonomy's mean is 61) and no
    roll.
    """
    rng = np.random.default_rng([seed, building.seed, 0xCA3])
    lo = np.array([0.5, 0.5, 0.5])
    hi = np.array([building.size[0] - 0.5, min(2.0, building.size[1] - 0.3), building.size[2] - 0.5])
    cameras = []
    for point in range(points):
        for _ in range(100):
            pos = rng.uniform(lo, hi)
            if not _inside_object(pos, building.objects, margin=0.3):
                break
        for view in range(views):
            if building.objects and rng.random() < 0.7:
                target = building.objects[rng.integers(len(building.objects))].centre + rng.normal(0, 0.3, 3)
            else:
                target = rng.uniform([0, 0, 0], building.size)
            look = target - pos
            yaw = float(np.arctan2(look[0], look[2]))
            pitch = float(np.clip(np.arctan2(look[1], np.hypot(look[0], look[2])), -0.7, 0.5))
            rot = rotation(yaw, pitch)
            cameras.append(Camera(pos, rot, float(np.radians(rng.uniform(45, 75))), point, view))
    return cameras
