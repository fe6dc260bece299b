"""Convert any dataset with one file of your own: it declares the fields and yields the samples.

    python -m raytaskaff.data plugin --module my_data.py --out DIR

The file defines

    FIELDS = [{"name": "rgb", "kind": "image", "dtype": "uint8", "shape": [64, 64, 3]},
              {"name": "age", "kind": "scalar", "dtype": "float32", "shape": [1]}, ...]
    GROUP = "person"             # optional: what no two splits share (default "group")
    META = {"image": "string"}   # optional: other per-sample columns and their Arrow types

    def samples():
        for ...:
            yield split, group, {"rgb": array, "age": array}           # or (..., meta) as a 4th item
            yield split, group, Skip("unreadable scan 0012.dcm")      # a sample it could not load

with one `image` field named as the sweep's `data.input` (default rgb). A sample it skips, or one
whose arrays do not match the declared fields, is left out and listed in the summary
(`conversion_summary.json`), as the other converters do; an error in the file itself (import,
a malformed declaration, an exception while yielding) stops the conversion in one line and
writes nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from raytaskaff import __version__
from raytaskaff.data.fields import Field
from raytaskaff.data.folder import SUMMARY_FILE, Summary
from raytaskaff.data.shards import SPLITS, ShardWriter
from raytaskaff.errors import DataError


class Skip:
    """Yielded in place of a sample's arrays: the sample could not be loaded, for `reason`."""

    def __init__(self, reason: str) -> None:
        self.reason = str(reason)


def load_plugin(path: str | Path):
    """The user's module at `path`; DataError (one line) if it is missing or fails to import."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise DataError(f"--module {path}: no such .py file")
    spec = importlib.util.spec_from_file_location(f"raytaskaff_user_data_{path.stem}", path.resolve())
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code: its error on one line
        raise DataError(f"--module {path}: failed to import: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    for name in ("FIELDS", "samples"):
        if not hasattr(module, name):
            raise DataError(f"--module {path}: defines no {name} (see python -m raytaskaff.data plugin --help)")
    return module


def declared_fields(module, where: str) -> list[Field]:
    fields = []
    for i, spec in enumerate(module.FIELDS):
        if isinstance(spec, Field):
            fields.append(spec)
            continue
        if not isinstance(spec, dict) or "name" not in spec:
            raise DataError(f"{where}: FIELDS[{i}] must be a mapping with a name, got {spec!r}")
        try:
            fields.append(Field.from_dict(spec["name"], {k: v for k, v in spec.items() if k != "name"}))
        except DataError as e:
            raise DataError(f"{where}: FIELDS[{i}]: {e}") from None
    if not any(f.kind == "image" for f in fields):
        raise DataError(f"{where}: FIELDS declares no image field (the network's input)")
    return fields


def convert(module_path: str | Path, out: str | Path, *, format: str = "arrow", rows_per_shard: int = 1024,
            overwrite: bool = False) -> Summary:
    """Write the samples the user's module yields as a dataset at `out`."""
    module = load_plugin(module_path)
    where = f"--module {module_path}"
    fields = declared_fields(module, where)
    dense = {f.shape[0] for f in fields if f.dense}
    if len(dense) != 1:
        raise DataError(f"{where}: dense fields must share one size, got {sorted(dense)}")
    size = dense.pop()
    group_column, meta = getattr(module, "GROUP", "group"), dict(getattr(module, "META", {}))
    producer = {"source": "plugin", "module": Path(module_path).name, "converter": __version__}
    skipped: list[tuple[str, str]] = []
    per_split = {s: 0 for s in SPLITS}
    seen: dict[str, set[str]] = {}
    with ShardWriter(out, size, fields=fields, group=group_column, meta=meta, format=format,
                     rows_per_shard=rows_per_shard, producer=producer, overwrite=overwrite) as writer:
        try:
            for n, item in enumerate(module.samples()):
                if not isinstance(item, tuple) or len(item) not in (3, 4):
                    raise DataError(f"{where}: sample {n} is not (split, group, arrays[, meta]): {type(item).__name__}")
                split, group, arrays, *rest = item
                label = f"sample {n} (group {group})"
                if isinstance(arrays, Skip):
                    skipped.append((label, arrays.reason))
                    continue
                if split not in SPLITS:
                    raise DataError(f"{where}: {label}: split {split!r} is not one of {', '.join(SPLITS)}")
                try:
                    writer.add_sample(split, str(group), arrays, meta=rest[0] if rest else {})
                except DataError as e:
                    skipped.append((label, str(e)))
                    continue
                per_split[split] += 1
                seen.setdefault(str(group), set()).add(split)
        except DataError:
            raise
        except Exception as e:  # the user's generator failed: stop, write nothing
            raise DataError(f"{where}: samples() failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        if not any(per_split.values()):
            raise DataError(f"{where}: no sample was written ({len(skipped)} skipped)")
        summary = Summary(str(module_path), str(out), size, tuple(f.name for f in fields), per_split, len(seen), tuple(skipped),
                          sum(len(s) > 1 for s in seen.values()))
        (writer.staging / SUMMARY_FILE).write_text(summary.to_json())
    return summary
