"""Convert real Taskonomy files into shards (shared/reference/taskonomy-format.md, sections 2-4, 13, 14).

ROOT may hold any of the layouts Taskonomy is distributed in; which one is detected from ROOT:

    tar             ROOT/<building>_<domain>.tar or ROOT/<domain>__taskonomy__<building>.tar,
                    members <domain>/point_P_view_V_domain_<domain>.png (read in place, never extracted)
    omnitools       ROOT/<domain>/taskonomy/<building>/point_P_view_V_domain_<domain>.png
    domain-first    ROOT/<domain>/<building>/point_… (taskgrouping, TAG)
    building-first  ROOT/<building>/<domain>/point_…

Folder and file names may use old domain names (`edge2d`, `segmentsemantic`, …). A view
(building, point, view) is written when its RGB and every requested domain decode cleanly: each
image is cropped to its centred square when it is not square, then shrunk with `resize_raw`
(depth and normals take their invalid pixels from depth_zbuffer == 65535 when the view has a
depth_zbuffer file). Any other view is skipped and each missing or bad file is recorded; a
label is never taken from another view (the silent label reuse of taskgrouping's loader).
"""

from __future__ import annotations

import io
import json
import math
import os
import posixpath
import re
import struct
import tarfile
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from raytaskaff.data.domains import ALIASES, DOMAINS, INPUT, check_raw, domain
from raytaskaff.data.resize import resize_raw
from raytaskaff.data.shards import SPLITS, ShardWriter
from raytaskaff.data.splits import check_assignment, load_split
from raytaskaff.errors import DataError

FILE_NAME = re.compile(r"point_(\d+)_view_(\d+)_domain_([a-z0-9_]+)\.(png|json)")
POINT_INFO = "point_info"
SUMMARY_FILE = "conversion_summary.json"
LAYOUTS = {
    "tar": "ROOT/<building>_<domain>.tar",
    "omnitools": "ROOT/<domain>/taskonomy/<building>/",
    "domain-first": "ROOT/<domain>/<building>/",
    "building-first": "ROOT/<building>/<domain>/",
}
_SPELLINGS = sorted({*DOMAINS, *ALIASES, *(s for d in DOMAINS.values() for s in d.spellings()), POINT_INFO},
                    key=len, reverse=True)  # longest first: `x_depth_zbuffer.tar` is not building `x_depth`

Key = tuple[str, int, int]  # (building, point, view)


class Source(NamedTuple):
    """One file's bytes: a plain file, or `size` bytes at `offset` of an uncompressed tar."""

    path: str
    member: str | None = None
    offset: int = 0
    size: int = 0

    @property
    def label(self) -> str:
        return self.path if self.member is None else f"{self.path}:{self.member}"

    def read(self) -> bytes:
        if self.member is None:
            return Path(self.path).read_bytes()
        with open(self.path, "rb") as f:  # seek, don't re-scan the tar's headers for every view
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"tar member cut short ({len(data)} of {self.size} bytes)")
        return data


@dataclass(frozen=True)
class ConversionSummary:
    """What a conversion wrote and what it left out.

    per_split, per_building: converted views. per_domain: converted views carrying each domain
    (every converted view carries all). problems_per_domain: missing or bad files by domain.
    bad_files: (path, problem); a tar member's path is `archive.tar:member`. skipped_views:
    (building, point, view, reason). ignored_buildings: found on disk but not in the split.
    """

    root: str
    out: str
    layout: str
    size: int
    domains: tuple[str, ...]
    per_split: dict[str, int]
    per_building: dict[str, int]
    per_domain: dict[str, int]
    problems_per_domain: dict[str, int]
    bad_files: tuple[tuple[str, str], ...]
    skipped_views: tuple[tuple[str, int, int, str], ...]
    ignored_buildings: tuple[str, ...]

    @property
    def views(self) -> int:
        return sum(self.per_split.values())

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "views": self.views}, indent=1)

    def format(self, limit: int = 10) -> str:
        """Several lines for a terminal; at most `limit` bad files and skipped views are listed."""
        buildings = _count(len(self.per_building), "building")
        lines = [f"converted {_count(self.views, 'view')} of {buildings} from {self.root} "
                 f"({self.layout} layout, {LAYOUTS[self.layout]}) at {self.size}x{self.size} into {self.out}",
                 "  " + ", ".join(f"{s}: {self.per_split.get(s, 0)} views" for s in SPLITS),
                 "  domains: " + ", ".join(self.domains)]
        for title, items in (("skipped views", [f"{b} point {p} view {v}: {r}" for b, p, v, r in self.skipped_views]),
                             ("bad files", [f"{path}: {problem}" for path, problem in self.bad_files])):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {item}" for item in items[:limit]]
                if len(items) > limit:
                    lines.append(f"    … and {len(items) - limit} more (see {SUMMARY_FILE})")
        if self.ignored_buildings:
            lines.append(f"  buildings not in the split, ignored ({len(self.ignored_buildings)}): "
                         + ", ".join(self.ignored_buildings))
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _first_line(error: Exception) -> str:
    """A problem on one line: the exception's first line, or its type when it has no message."""
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def to_raw(image: Image.Image, name: str) -> np.ndarray:
    """The raw (H, W, C) array of domain `name` from a decoded image; DataError on a wrong mode.

    16-bit greys go through numpy (never torchvision's ToTensor, which wraps values > 32767);
    Pillow < 10.3 opens them as mode I (int32), accepted when every value fits in 16 bits.
    """
    spec = domain(name)
    mode = image.mode
    if spec.np_dtype == np.uint16:
        if mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise DataError(f"mode {mode}, expected I;16 (16-bit grey) for {spec.name}")
        array = np.asarray(image)
        if mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
            raise DataError(f"mode I values {array.min()}..{array.max()} do not fit 16 bits")
        array = array.astype(np.uint16)
    elif spec.channels == 3 and mode == "RGB":
        array = np.asarray(image)
    elif spec.channels == 3 and mode == "L" and spec.grey:  # Taskonomy's are RGB; a grey copy is repeated to three
        array = np.repeat(np.asarray(image)[..., None], 3, axis=-1)
    elif spec.channels == 1 and mode == "L":
        array = np.asarray(image)
    else:
        raise DataError(f"mode {mode}, expected {'RGB' if spec.channels == 3 else 'L'} for {spec.name}")
    array = array[..., None] if array.ndim == 2 else array
    check_raw(spec.name, array)
    return array


def decode_png(data: bytes, name: str) -> np.ndarray:
    """Decode one file's bytes into the raw (H, W, C) array of domain `name`; DataError if bad."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise DataError("not an image (unidentified format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise DataError(f"corrupt image ({e})") from None
    return to_raw(image, name)


def center_square(raw: np.ndarray) -> np.ndarray:
    """The centred (S, S, C) crop of an (H, W, C) array, S = min(H, W); squares pass unchanged."""
    h, w = raw.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return raw[top:top + side, left:left + side]


def load_view(sources: dict[str, Source], domains: tuple[str, ...], size: int
              ) -> tuple[dict[str, np.ndarray] | None, float, list[tuple[str, str | None, str]]]:
    """Read, decode, crop and resize one view.

    Returns (arrays, fov, problems): arrays maps "rgb" and each domain to (size, size, C) raw
    values, None when any of them is missing or bad; fov is `field_of_view_rads` from the
    view's point_info (NaN without one); problems lists (domain, path or None if missing, problem).
    A bad depth_zbuffer read only for the invalid mask, or a bad point_info, is reported but does
    not skip the view.
    """
    needed = (INPUT, *domains)
    extra = tuple(m for m in _masks(domains) if m not in domains)
    problems: list[tuple[str, str | None, str]] = []
    raws: dict[str, np.ndarray] = {}
    for name in (*needed, *extra):
        source = sources.get(name)
        if source is None:
            if name in needed:
                problems.append((name, None, "missing"))
            continue
        try:
            raws[name] = decode_png(source.read(), name)
        except (DataError, OSError) as e:
            problems.append((name, source.label, _first_line(e)))
    if INPUT in raws:  # a label of another resolution belongs to some other image
        shape = raws[INPUT].shape[:2]
        for name in [n for n in raws if raws[n].shape[:2] != shape]:
            problems.append((name, sources[name].label, f"{raws.pop(name).shape[:2]} pixels, but rgb is {shape}"))
        if min(shape) < size:
            problems.append((INPUT, sources[INPUT].label, f"{shape} pixels, smaller than the size {size}"))
    fov = math.nan
    if POINT_INFO in sources:
        try:
            fov = float(json.loads(sources[POINT_INFO].read())["field_of_view_rads"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append((POINT_INFO, sources[POINT_INFO].label, f"no field_of_view_rads ({_first_line(e)})"))
    if any(name in needed for name, _, _ in problems):
        return None, fov, problems
    raws = {name: center_square(raw) for name, raw in raws.items()}
    invalid = {m: raws[m][..., 0] == DOMAINS[m].invalid for m in _masks(domains) if m in raws}
    arrays = {name: resize_raw(name, raws[name], size, invalid.get(DOMAINS[name].mask)) for name in needed}
    return arrays, fov, problems


def _masks(domains: Iterable[str]) -> list[str]:
    """The domains whose invalid pixels mask `domains` (depth_zbuffer for depth and normals)."""
    return list(dict.fromkeys(DOMAINS[d].mask for d in domains if DOMAINS[d].mask))


def _kind(name: str) -> str | None:
    """Canonical domain (or point_info) that a folder or file-name spelling stands for, else None."""
    if name == POINT_INFO:
        return POINT_INFO
    try:
        return domain(name).name
    except DataError:
        return None


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def parse_tar_name(name: str) -> tuple[str, str] | None:
    """(building, domain) of `hanson_rgb.tar` or `rgb__taskonomy__hanson.tar`, else None."""
    if not name.endswith(".tar"):
        return None
    stem = name[:-4]
    if "__taskonomy__" in stem:
        spelling, building = stem.split("__taskonomy__", 1)
        kind = _kind(spelling)
        return (building, kind) if kind and building else None
    for spelling in _SPELLINGS:
        if stem.endswith("_" + spelling) and len(stem) > len(spelling) + 1:
            return stem[:-len(spelling) - 1], _kind(spelling)
    return None


def detect_layout(root: Path) -> str:
    """Which of LAYOUTS `root` holds; DataError when none."""
    dirs = _subdirs(root)
    domain_dirs = [d for d in dirs if _kind(d.name)]
    if domain_dirs:
        return "omnitools" if any((d / "taskonomy").is_dir() for d in domain_dirs) else "domain-first"
    if any(_kind(sub.name) for d in dirs for sub in _subdirs(d)):
        return "building-first"
    if any(parse_tar_name(p.name) for p in root.iterdir() if p.is_file()):
        return "tar"
    raise DataError(f"{root}: no Taskonomy files found (expected one of: {', '.join(LAYOUTS.values())})")


def _folders(root: Path, layout: str) -> Iterator[tuple[str, str, Path]]:
    """(building, domain, folder) for every folder of a directory layout."""
    for top in _subdirs(root):
        if layout == "building-first":
            for sub in _subdirs(top):
                if _kind(sub.name):
                    yield top.name, _kind(sub.name), sub
        elif _kind(top.name):
            base = top / "taskonomy" if layout == "omnitools" else top
            for building in _subdirs(base) if base.is_dir() else ():
                yield building.name, _kind(top.name), building


def _files(root: Path, layout: str, kinds: set[str], keep: Callable[[str], bool], ignored: set[str],
           bad: list[tuple[str, str]]) -> Iterator[tuple[str, str, str, Source]]:
    """(building, domain, file name, source) of every file of a wanted domain and building."""
    if layout == "tar":
        for path in sorted(root.glob("*.tar")):
            parsed = parse_tar_name(path.name)
            if parsed is None or parsed[1] not in kinds:
                continue
            building, kind = parsed
            if not keep(building):
                ignored.add(building)
                continue
            try:
                with tarfile.open(path, "r:") as tar:
                    for member in tar:
                        if member.isfile():
                            yield building, kind, posixpath.basename(member.name), Source(
                                str(path), member.name, member.offset_data, member.size)
            except (tarfile.TarError, OSError) as e:
                bad.append((str(path), f"unreadable tar ({e})"))
        return
    for building, kind, folder in _folders(root, layout):
        if kind not in kinds:
            continue
        if not keep(building):
            ignored.add(building)
            continue
        for name in sorted(os.listdir(folder)):
            yield building, kind, name, Source(str(folder / name))


def index_views(root: Path, layout: str, kinds: set[str], keep: Callable[[str], bool]
                ) -> tuple[dict[Key, dict[str, Source]], set[str], list[tuple[str, str]]]:
    """Files by view and domain, buildings left out by `keep`, and unreadable archives."""
    views: dict[Key, dict[str, Source]] = defaultdict(dict)
    ignored: set[str] = set()
    bad: list[tuple[str, str]] = []
    for building, kind, name, source in _files(root, layout, kinds, keep, ignored, bad):
        match = FILE_NAME.fullmatch(name)
        # the file name must name the folder's domain (either spelling); first in sorted order wins
        if match and _kind(match[3]) == kind and (match[4] == "json") == (kind == POINT_INFO):
            views[(building, int(match[1]), int(match[2]))].setdefault(kind, source)
    return views, ignored, bad


def expected_path(root: Path, layout: str, key: Key, kind: str) -> str:
    """Where a missing file of domain `kind` would be, for the report."""
    building, point, view = key
    name = f"point_{point}_view_{view}_domain_{kind}.{'json' if kind == POINT_INFO else 'png'}"
    relative = {"tar": f"{building}_{kind}.tar:{kind}/{name}", "omnitools": f"{kind}/taskonomy/{building}/{name}",
                "domain-first": f"{kind}/{building}/{name}", "building-first": f"{building}/{kind}/{name}"}[layout]
    return str(root / relative)


def _load_job(job: tuple[dict[str, Source], tuple[str, ...], int]):
    return load_view(*job)


def _ordered_map(fn: Callable, jobs: Iterable, workers: int) -> Iterator:
    """map(fn, jobs) in order; with workers > 1 in a process pool, a bounded number in flight."""
    if workers <= 1:
        yield from map(fn, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= 4 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _canonical_domains(domains: Iterable[str]) -> tuple[str, ...]:
    names = [domain(name).name for name in domains]
    return tuple(dict.fromkeys(n for n in names if n != INPUT))


def convert(root: str | os.PathLike, out: str | os.PathLike, *, split: str | dict[str, str], size: int,
            domains: list[str], format: str = "arrow", overwrite: bool = False, progress: bool = True,
            workers: int = 1, rows_per_shard: int = 1024) -> ConversionSummary:
    """Convert the Taskonomy views under `root` into a shard dataset at `out` (atomically).

    split: `paper`, `tiny`, a split file (see `load_split`) or a {building: split} mapping; views
    of buildings outside it are left out. size: H = W of the written arrays (pixels). domains:
    label domains besides RGB (old names accepted). workers > 1 decodes in that many processes;
    views are written sorted by (building, point, view) either way. The summary is also written
    to `out/conversion_summary.json`. DataError when `root` holds no Taskonomy files, no view of
    the split, or only views that had to be skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    names = _canonical_domains(domains)
    assignment = load_split(split) if isinstance(split, str) else check_assignment(split)
    if size < 1:
        raise DataError(f"size must be a positive number of pixels, got {size}")
    if Path(out).is_dir() and any(Path(out).iterdir()) and not overwrite:  # before a long scan of root
        raise DataError(f"{out}: exists and is not empty (pass overwrite to replace it)")
    layout = detect_layout(root)
    kinds = {INPUT, *names, POINT_INFO, *_masks(names)}
    views, ignored, bad_files = index_views(root, layout, kinds, lambda building: building in assignment)
    keys = sorted(k for k, sources in views.items() if any(n in sources for n in (INPUT, *names)))
    if not keys:
        found = f"found buildings: {', '.join(sorted(ignored))}" if ignored else "no building folders or tars found"
        raise DataError(f"{root}: no {layout}-layout views of the split's {len(assignment)} buildings ({found})")

    jobs = ((views[key], names, size) for key in keys)
    per_split, per_building, problems_per_domain = Counter(), Counter(), Counter()
    skipped: list[tuple[str, int, int, str]] = []
    params = {"root": str(root.resolve()), "layout": layout, "size": size, "domains": list(names),
              "split": split if isinstance(split, str) else dict(sorted(split.items()))}
    # closing() shuts a worker pool down when writing fails; the writer exits (commits or aborts) first
    with closing(_ordered_map(_load_job, jobs, workers)) as loaded, ShardWriter(
            out, size, [INPUT, *names], format=format, rows_per_shard=rows_per_shard,
            producer={"source": "taskonomy", "params": params}, overwrite=overwrite) as writer:
        # loaded comes first in zip so that it runs out, which closes the progress bar
        for (arrays, fov, problems), key in tqdm(zip(loaded, keys), total=len(keys), unit="view",
                                                 desc="converting", disable=not progress):
            for kind, path, problem in problems:
                bad_files.append((path or expected_path(root, layout, key, kind), problem))
                problems_per_domain[kind] += 1
            building, point, view = key
            if arrays is None:
                reason = "; ".join(f"{kind}: {problem}" for kind, _, problem in problems if kind in (INPUT, *names))
                skipped.append((building, point, view, reason))
                continue
            writer.add(assignment[building], building, point, view, fov, arrays)
            per_split[assignment[building]] += 1
            per_building[building] += 1
        if not per_split:
            b, p, v, reason = skipped[0]
            raise DataError(f"{root}: all {len(keys)} views were skipped (first: {b} point {p} view {v}: {reason})")
        summary = ConversionSummary(
            root=str(root), out=str(out), layout=layout, size=size, domains=(INPUT, *names),
            per_split={s: per_split[s] for s in SPLITS}, per_building=dict(sorted(per_building.items())),
            per_domain={name: sum(per_split.values()) for name in (INPUT, *names)},
            problems_per_domain=dict(sorted(problems_per_domain.items())), bad_files=tuple(bad_files),
            skipped_views=tuple(skipped), ignored_buildings=tuple(sorted(ignored)))
        (writer.staging / SUMMARY_FILE).write_text(summary.to_json())  # committed with the shards
    return summary
