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

with one `image` field named as the sweep's `data.input` (default rgb). FIELDS, GROUP, META and
`split` name distinct columns. A sample it skips, or one whose arrays or meta values do not match
the declarations (a missing field, a wrong dtype or shape, not a numpy array), is left out and
listed in the summary (`conversion_summary.json`), as the other converters do; when every sample is
left out, the error counts them per reason. A label that contradicts its declaration (a NaN or
infinite value in a float field, a class id outside 0..classes-1) is an error in the file, as are
a failed import, a malformed declaration and an exception while yielding: each stops the
conversion in one line and writes nothing. A label entry with one value in every sample is
reported as a warning (it cannot be learned beyond chance).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa

from raytaskaff import __version__
from raytaskaff.data.fields import Field
from raytaskaff.data.folder import SUMMARY_FILE, Summary, constant_labels, reasons
from raytaskaff.data.shards import SPLITS, ShardWriter
from raytaskaff.errors import DataError, one_line


class Skip:
    """Yielded in place of a sample's arrays: the sample could not be loaded, for `reason`."""

    def __init__(self, reason: str) -> None:
        self.reason = one_line(reason)  # listed one per line, and counted in a one-line error


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
    """The module's FIELDS as Fields; DataError (one line, naming the entry) if one is malformed."""
    if not isinstance(module.FIELDS, (list, tuple)):
        raise DataError(f"{where}: FIELDS must be a list of field mappings, got {type(module.FIELDS).__name__}")
    fields = []
    for i, spec in enumerate(module.FIELDS):
        if isinstance(spec, Field):
            fields.append(spec)
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise DataError(f"{where}: FIELDS[{i}] must be a mapping with a name, got {one_line(repr(spec))}")
        shape = spec.get("shape")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
            raise DataError(f"{where}: FIELDS[{i}] ({spec['name']}): shape must be a list of integers, got {shape!r}")
        try:
            fields.append(Field.from_dict(spec["name"], {k: v for k, v in spec.items() if k != "name"}))
        except (DataError, TypeError, ValueError) as e:  # a value of the wrong type fails inside Field
            raise DataError(f"{where}: FIELDS[{i}]: {one_line(e)}") from None
    if not any(f.kind == "image" for f in fields):
        raise DataError(f"{where}: FIELDS declares no image field (the network's input)")
    return fields


def arrow_type(alias) -> pa.DataType | None:
    """The Arrow type a name such as "string" or "int32" stands for, or None."""
    try:
        return pa.type_for_alias(alias) if isinstance(alias, str) else None
    except (ValueError, KeyError):
        return None


def declared_columns(module, fields: list[Field], where: str) -> tuple[str, dict[str, str]]:
    """(GROUP, META) of the module, checked: names that are strings, Arrow type names, and split,
    GROUP, META and FIELDS each naming their own column."""
    group, meta = getattr(module, "GROUP", "group"), getattr(module, "META", {})
    if not isinstance(group, str) or not group:
        raise DataError(f"{where}: GROUP must be a column name, got {group!r}")
    if not isinstance(meta, dict):
        raise DataError(f"{where}: META must be a mapping {{column: Arrow type name}}, got {type(meta).__name__}")
    owner = {"split": "the converter's split column"}
    if group in owner:
        raise DataError(f"{where}: GROUP {group!r} is {owner[group]}; name the group otherwise")
    owner[group] = "the GROUP column"
    for name, kind in meta.items():
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}: META column names must be strings, got {name!r}")
        if name in owner:
            raise DataError(f"{where}: META column {name!r} is also {owner[name]}")
        if arrow_type(kind) is None:
            raise DataError(f"{where}: META[{name!r}]: {kind!r} is not an Arrow type name (string, int32, float32, ...)")
        owner[name] = "a META column"
    for spec in fields:
        if spec.name in owner:
            raise DataError(f"{where}: field {spec.name!r} of FIELDS is also {owner[spec.name]}")
        owner[spec.name] = "another field of FIELDS"
    return group, dict(meta)


def mismatch(fields: list[Field], arrays, meta_types: dict[str, pa.DataType], meta) -> str | None:
    """Why a yielded sample does not fit the declarations (a reason to skip it), or None."""
    if not isinstance(arrays, dict):
        return f"arrays are a {type(arrays).__name__}, not a mapping of field -> array"
    missing = [f.name for f in fields if f.name not in arrays]
    if missing:
        return f"missing fields {missing}"
    for spec in fields:
        if not isinstance(arrays[spec.name], np.ndarray):
            return f"{spec.name}: a {type(arrays[spec.name]).__name__}, not a numpy array"
        try:
            spec.check(arrays[spec.name])
        except DataError as e:
            return str(e)
    if not isinstance(meta, dict) or set(meta) != set(meta_types):
        return f"meta {meta!r}, expected a mapping of {sorted(meta_types)}"
    for name, kind in meta_types.items():
        try:
            pa.array([meta[name]], type=kind)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return f"meta {name}: {meta[name]!r} is not of type {kind}"
    return None


def check_labels(fields: list[Field], arrays: dict[str, np.ndarray], where: str) -> None:
    """DataError unless every value is what its field declares: finite in a float field, a class id
    in 0..classes-1 in a class field."""
    for spec in fields:
        x = arrays[spec.name]
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise DataError(f"{where}: field {spec.name} holds {x[~np.isfinite(x)][0]}, not a finite number "
                            "(mark a missing value with the field's `invalid`, or yield Skip(...))")
        if spec.classes is not None and x.size and (x.min() < 0 or x.max() >= spec.classes):
            bad = x.min() if x.min() < 0 else x.max()
            raise DataError(f"{where}: field {spec.name} holds class id {bad}, out of range "
                            f"(FIELDS declares classes: {spec.classes}, ids 0..{spec.classes - 1})")


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
    group_column, meta = declared_columns(module, fields, where)
    meta_types = {name: arrow_type(kind) for name, kind in meta.items()}
    labels = [f for f in fields if not f.dense]
    label_rows: list[dict] = []  # per written sample, its per-sample labels: to find constant ones
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
                meta_values = rest[0] if rest else {}
                why = mismatch(fields, arrays, meta_types, meta_values)
                if why is not None:
                    skipped.append((label, why))
                    continue
                check_labels(fields, arrays, f"{where}: {label}")
                writer.add_sample(split, str(group), arrays, meta=meta_values)
                per_split[split] += 1
                seen.setdefault(str(group), set()).add(split)
                label_rows.append({f.name: arrays[f.name].copy() for f in labels})  # the module may reuse its arrays
        except DataError:
            raise
        except Exception as e:  # the user's generator failed: stop, write nothing
            raise DataError(f"{where}: samples() failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        if not any(per_split.values()):
            raise DataError(f"{where}: no sample was written ({len(skipped)} skipped: {reasons(skipped)})")
        summary = Summary(str(module_path), str(out), size, tuple(f.name for f in fields), per_split, len(seen), tuple(skipped),
                          sum(len(s) > 1 for s in seen.values()), constant_labels(labels, label_rows))
        (writer.staging / SUMMARY_FILE).write_text(summary.to_json())
    return summary
