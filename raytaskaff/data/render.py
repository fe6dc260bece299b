"""Vectorised ray casting of a `Building` through a pinhole `Camera`.

Every pixel's ray is intersected with every surface at once (numpy over all pixels, a loop over
the handful of primitives). Rays are parametrised as `o + t * d` with `d` having camera-frame
z = 1, so the hit parameter `t` *is* the z-buffer depth in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raytaskaff.data.domains import SEGMENT_BACKGROUND
from raytaskaff.data.scene import PATTERNS, Building, Camera, Material, Primitive

SKY = np.array([0.78, 0.86, 0.97])
#: Edges of boxes, rims and room corners are rounded with this radius (metres) for curvature,
#: as scanned meshes are: a mathematically sharp edge would have infinite curvature.
EDGE_RADIUS = 0.05
_EPS = 1e-6


@dataclass
class Hits:
    """Per-pixel geometry of one view at resolution (R, R).

    depth: z-buffer depth in metres, inf where the ray hits nothing (windows).
    ray_length: |d| for each pixel's ray, so Euclidean distance = depth * ray_length.
    points: (R, R, 3) world hit points; normals: (R, R, 3) unit world normals facing the camera.
    surface: (R, R) int, -1 for no geometry, 0-5 room surfaces, 6+ objects.
    class_id: (R, R) semantic id; uv: (R, R, 2) texture coordinates in metres;
    curvature: (R, R, 2) principal curvatures k1 >= k2 in 1/m (convex > 0).
    """

    depth: np.ndarray
    ray_length: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    surface: np.ndarray
    class_id: np.ndarray
    uv: np.ndarray
    curvature: np.ndarray
    directions: np.ndarray
    camera: Camera

    @property
    def valid(self) -> np.ndarray:
        return self.surface >= 0


def camera_rays(camera: Camera, resolution: int) -> np.ndarray:
    """(R*R, 3) world ray directions whose camera-frame z component is 1 (pixel centres at +0.5)."""
    focal = (resolution / 2) / np.tan(camera.fov / 2)
    coords = (np.arange(resolution) + 0.5 - resolution / 2) / focal
    v, u = np.meshgrid(coords, coords, indexing="ij")
    local = np.stack([u.ravel(), v.ravel(), np.ones(resolution * resolution)], axis=1)
    return local @ camera.rotation  # camera -> world is the transpose of the rotation


def _room(o: np.ndarray, d: np.ndarray, size: np.ndarray):
    """Exit distance through the room box from inside, and the index (0-5) of the surface hit."""
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(d > 0, size, 0.0)
        t_axis = np.where(np.abs(d) > _EPS, (bound - o) / d, np.inf)
    axis = np.argmin(t_axis, axis=1)
    t = t_axis[np.arange(len(d)), axis]
    positive = d[np.arange(len(d)), axis] > 0
    # axis 1 (y): floor 0 / ceiling 1; axis 0 (x): walls 2 / 3; axis 2 (z): walls 4 / 5
    surface = np.choose(axis, [2 + positive, positive.astype(int), 4 + positive])
    return t, surface


def _box(o, d, centre, half, yaw):
    """Slab test in the box's frame; column by column, as reductions over a length-3 axis are slow."""
    c, s = np.cos(yaw), np.sin(yaw)
    rel = o - centre
    lo = (c * rel[0] - s * rel[2], rel[1], s * rel[0] + c * rel[2])
    ld = (c * d[:, 0] - s * d[:, 2], d[:, 1], s * d[:, 0] + c * d[:, 2])
    t_in = np.full(len(d), -np.inf)
    t_out = np.full(len(d), np.inf)
    for axis in range(3):
        inv = 1.0 / np.where(np.abs(ld[axis]) > _EPS, ld[axis], _EPS)
        t1 = (-half[axis] - lo[axis]) * inv
        t2 = (half[axis] - lo[axis]) * inv
        np.maximum(t_in, np.minimum(t1, t2), out=t_in)
        np.minimum(t_out, np.maximum(t1, t2), out=t_out)
    hit = (t_out >= t_in) & (t_in > _EPS)
    return np.where(hit, t_in, np.inf)


def _sphere(o, d, centre, radius):
    oc = o - centre
    a = np.einsum("ij,ij->i", d, d)
    b = 2 * d @ oc
    c = oc @ oc - radius**2
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def _cylinder(o, d, base, radius, height):
    ox, oz = o[0] - base[0], o[2] - base[2]
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (d[:, 0] * ox + d[:, 2] * oz)
    c = ox**2 + oz**2 - radius**2
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        y = o[1] + t_side * d[:, 1]
        side_ok = (disc >= 0) & (t_side > _EPS) & (y >= base[1]) & (y <= base[1] + height)
        t_cap = (base[1] + height - o[1]) / d[:, 1]
    cap_x, cap_z = ox + t_cap * d[:, 0], oz + t_cap * d[:, 2]
    cap_ok = (t_cap > _EPS) & (cap_x**2 + cap_z**2 <= radius**2) & (o[1] > base[1] + height)
    return np.minimum(np.where(side_ok, t_side, np.inf), np.where(cap_ok, t_cap, np.inf))


def cast(building: Building, camera: Camera, resolution: int) -> Hits:
    """Intersect every pixel ray with the room and its objects; return per-pixel geometry."""
    o = camera.position
    d = camera_rays(camera, resolution)
    t, surface = _nearest(building, o, d)
    points = o + t[:, None] * d
    normals, uv, curvature = _room_geometry(points, surface, building.size)
    _cut_windows(building, points, surface)
    class_id = np.full(len(d), SEGMENT_BACKGROUND, dtype=np.uint8)
    for index, obj in enumerate(building.objects):
        m = surface == 6 + index
        if not m.any():
            continue
        class_id[m] = obj.class_id
        normals[m], uv[m], curvature[m] = _object_geometry(obj, points[m])

    facing = np.einsum("ij,ij->i", normals, d) > 0  # never show a back face
    normals[facing] *= -1
    invalid = surface < 0
    t[invalid] = np.inf
    class_id[invalid] = SEGMENT_BACKGROUND
    shape = (resolution, resolution)
    return Hits(
        depth=t.reshape(shape),
        ray_length=np.linalg.norm(d, axis=1).reshape(shape),
        points=points.reshape(*shape, 3),
        normals=normals.reshape(*shape, 3),
        surface=surface.reshape(shape),
        class_id=class_id.reshape(shape),
        uv=uv.reshape(*shape, 2),
        curvature=curvature.reshape(*shape, 2),
        directions=d.reshape(*shape, 3),
        camera=camera,
    )


def _nearest(building: Building, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) distance along each ray (N, 3) from `o` to the first surface it hits, and (N,) that
    surface's index: 0-5 the room's, 6 + i object i."""
    t, surface = _room(o, d, building.size)
    for index, obj in enumerate(building.objects):
        if obj.kind == "box":
            t_obj = _box(o, d, obj.centre, obj.dims, obj.yaw)
        elif obj.kind == "sphere":
            t_obj = _sphere(o, d, obj.centre, obj.dims[0])
        else:
            t_obj = _cylinder(o, d, obj.centre, obj.dims[0], obj.dims[1])
        closer = t_obj < t
        t = np.where(closer, t_obj, t)
        surface = np.where(closer, 6 + index, surface)
    return t, surface


def _room_geometry(points: np.ndarray, surface: np.ndarray, size: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) normals, (N, 2) uv and (N, 2) curvatures of the (N, 3) `points` on the room's
    surfaces (zero elsewhere): axis-aligned planes facing inwards; uv = the two in-plane coordinates."""
    n = len(points)
    normals = np.zeros((n, 3))
    uv = np.zeros((n, 2))
    curvature = np.zeros((n, 2))
    for s, (axis, sign) in enumerate([(1, 1), (1, -1), (0, 1), (0, -1), (2, 1), (2, -1)]):
        m = surface == s
        normals[m, axis] = sign
        others = [a for a in range(3) if a != axis]
        uv[m] = points[m][:, others]
        to_edge = np.minimum(points[m][:, others], size[others] - points[m][:, others]).min(axis=1)
        curvature[m, 1] = np.where(to_edge < EDGE_RADIUS, -1.0 / EDGE_RADIUS, 0.0)  # concave corner
    return normals, uv, curvature


def _cut_windows(building: Building, points: np.ndarray, surface: np.ndarray) -> None:
    """Mark the (N,) `surface` of wall points inside a window as no geometry (-1), in place."""
    for window in building.windows:
        axis = 0 if window.wall < 2 else 2
        on_wall = surface == 2 + window.wall if axis == 0 else surface == 4 + (window.wall - 2)
        along = points[:, 2] if axis == 0 else points[:, 0]
        inside = on_wall & (along > window.u[0]) & (along < window.u[1])
        inside &= (points[:, 1] > window.v[0]) & (points[:, 1] < window.v[1])
        surface[inside] = -1


def _object_geometry(obj: Primitive, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, 3) outward normals, (K, 2) uv and (K, 2) curvatures of the (K, 3) points `p` on `obj`."""
    if obj.kind == "box":
        return _box_geometry(obj, p)
    if obj.kind == "sphere":
        r = obj.dims[0]
        rel = (p - obj.centre) / r
        uv = np.stack([np.arctan2(rel[:, 0], rel[:, 2]) * r, np.arccos(np.clip(rel[:, 1], -1, 1)) * r], axis=1)
        return rel, uv, np.full((len(p), 2), 1.0 / r)
    r, h = obj.dims
    rel = p - obj.centre
    top = rel[:, 1] > h - 1e-4
    side_n = np.stack([rel[:, 0], np.zeros(len(p)), rel[:, 2]], axis=1) / r
    normals = np.where(top[:, None], [0.0, 1.0, 0.0], side_n)
    uv = np.where(top[:, None], rel[:, [0, 2]], np.stack([np.arctan2(rel[:, 0], rel[:, 2]) * r, rel[:, 1]], axis=1))
    rim = (np.hypot(rel[:, 0], rel[:, 2]) > r - EDGE_RADIUS) & (rel[:, 1] > h - EDGE_RADIUS)
    curvature = np.where(top[:, None], 0.0, [1.0 / r, 0.0])
    curvature[:, 0] = np.where(rim, np.maximum(curvature[:, 0], 1.0 / EDGE_RADIUS), curvature[:, 0])
    return normals, uv, curvature


def _box_geometry(obj: Primitive, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_object_geometry` of a box: the face is the axis on which a point is nearest the surface."""
    c, s = np.cos(obj.yaw), np.sin(obj.yaw)
    to_local = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    local = (p - obj.centre) @ to_local.T
    face = np.argmax(np.abs(local) / obj.dims, axis=1)
    n_local = np.zeros_like(local)
    n_local[np.arange(len(p)), face] = np.sign(local[np.arange(len(p)), face])
    in_face = np.abs(local) / obj.dims
    in_face[np.arange(len(p)), face] = 0.0
    to_edge = ((1.0 - in_face) * obj.dims).min(axis=1)
    curvature = np.zeros((len(p), 2))
    curvature[:, 0] = np.where(to_edge < EDGE_RADIUS, 1.0 / EDGE_RADIUS, 0.0)  # rounded edge
    uv = np.where(face[:, None] == 0, local[:, [2, 1]], np.where(face[:, None] == 1, local[:, [0, 2]], local[:, [0, 1]]))
    return n_local @ to_local, uv, curvature


def _texture_weights(materials: list[Material], index: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Texture mix weight in [0, 1] of each pixel, given its material `index` (N,) and uv (N, 2).

    Material parameters are gathered per pixel, so the work is one pass per pattern kind rather
    than one per material.
    """
    scale = np.array([m.scale for m in materials])[index]
    u, v = uv[:, 0] / scale, uv[:, 1] / scale
    kind = np.array([PATTERNS.index(m.pattern) for m in materials])[index]
    weight = np.zeros(len(index))
    m = kind == PATTERNS.index("checker")
    weight[m] = (np.floor(u[m]) + np.floor(v[m])) % 2
    m = kind == PATTERNS.index("stripes")
    angle = np.array([m_.angle for m_ in materials])[index[m]]
    weight[m] = np.sin(2 * np.pi * (u[m] * np.cos(angle) + v[m] * np.sin(angle))) > 0
    m = kind == PATTERNS.index("noise")  # bilinear value noise on each material's wrapping lattice
    if m.any():
        lattice = np.stack([mat.lattice for mat in materials])
        size = lattice.shape[1]
        which, un, vn = index[m], u[m], v[m]
        fu, fv = np.floor(un), np.floor(vn)
        au, av = un - fu, vn - fv
        iu, iv = fu.astype(np.int64) % size, fv.astype(np.int64) % size
        ju, jv = (iu + 1) % size, (iv + 1) % size
        top = lattice[which, iu, iv] * (1 - au) + lattice[which, ju, iv] * au
        bottom = lattice[which, iu, jv] * (1 - au) + lattice[which, ju, jv] * au
        weight[m] = top * (1 - av) + bottom * av
    return weight


_GAMMA = (np.linspace(0, 1, 65536) ** (1 / 2.2) * 255).round().astype(np.uint8)


def shade(building: Building, hits: Hits, rng: np.random.Generator) -> np.ndarray:
    """(R, R, 3) uint8 RGB: textured Lambertian surfaces under the building's point lights."""
    surface = hits.surface.ravel()
    materials = list(building.room_materials) + [o.material for o in building.objects]
    index = np.maximum(surface, 0)
    w = _texture_weights(materials, index, hits.uv.reshape(-1, 2))[:, None]
    albedo = np.stack([m.colour_a for m in materials])[index] * (1 - w) + np.stack([m.colour_b for m in materials])[index] * w
    points = hits.points.reshape(-1, 3)
    normals = hits.normals.reshape(-1, 3)
    light = np.full(len(surface), building.ambient)
    for position, power in zip(building.lights, building.light_power):
        to_light = position - points
        dist2 = np.einsum("ij,ij->i", to_light, to_light)
        cosine = np.einsum("ij,ij->i", normals, to_light) / np.sqrt(dist2)
        light += power * np.clip(cosine, 0, None) * 6.0 / (4.0 + dist2)
    colour = albedo * light[:, None]
    colour[surface < 0] = SKY
    colour += rng.standard_normal(colour.shape, dtype=np.float32) * 0.008
    r = hits.depth.shape[0]
    # gamma 2.2 through a 16-bit lookup table (off by at most one 8-bit level), far cheaper than a power
    return _GAMMA[np.rint(np.clip(colour, 0, 1) * 65535).astype(np.intp)].reshape(r, r, 3)
