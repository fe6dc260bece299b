"""Names derived from runs and sweeps, for folders and trackers: short and unique at any number
of tasks and any length of task names.

    OUT/tensorboard/<run name>/                    one TensorBoard run per sweep run
    OUT/tune/<experiment name>/<trial name>_<id>/  Tune's folder of a trial (a bundle of runs)
    STORE/runs/<key>/                              a run's result, network and checkpoint

A run's name (`run_name`) is its kind, tasks, injected labels and seed with its key's first 8
characters, as it always was, where that fits in NAME_LIMIT characters; past it (the all-task run
of 40 CelebA attributes is 483 characters), a readable prefix and the whole key. A bundle's trial
is named by its size, seed and key. The full task list of a run is in its record, never in a path.
`longest_paths` lists the deepest paths a sweep writes, for the preflight's check against the
file system's limits (`preflight.check_path_lengths`). No torch, no Ray.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from raytaskaff.plan import Run

#: The most characters of a name derived from a run or a sweep (a TensorBoard run, a trial, an
#: MLflow or W&B run): far below file systems' 255 bytes a name, with room for what Tune adds.
NAME_LIMIT = 100


def safe_name(text: str) -> str:
    """`text` with every run of characters other than letters, digits and `_.+-` made one `_`."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


def _fit(names: tuple[str, ...], room: int) -> str:
    """`a+b+3_more` in at most `room` characters: the first names that fit, then how many are left
    out; a first name too long alone is cut."""
    length, fits = -1, 0  # length of "+".join(names[:shown]); the most names that fit
    for shown in range(1, len(names) + 1):
        length += 1 + len(names[shown - 1])
        rest = len(names) - shown
        if length + (len(f"+{rest}_more") if rest else 0) <= room:
            fits = shown
    if fits:
        rest = len(names) - fits
        return "+".join(names[:fits]) + (f"+{rest}_more" if rest else "")
    tail = f"+{len(names) - 1}_more" if len(names) > 1 else ""
    return names[0][:max(1, room - len(tail))] + tail


def run_name(run: Run) -> str:
    """A filesystem-safe name of at most NAME_LIMIT characters that says the run's kind, tasks,
    injected labels and seed, then its key's first 8 characters:
    `li_depth_zbuffer_from_normal_seed_0_1c9e2f04`. Where that would be longer, the first tasks
    (and injected labels) that fit, how many more, the seed and the whole key:
    `all_Black_Hair+Wearing_Hat+38_more_seed_0_0123456789abcdef0123`."""
    name = f"{safe_name(run.label.replace('<-', ' from '))}_{run.key[:8]}"
    if len(name) <= NAME_LIMIT:
        return name  # as always: TensorBoard runs of earlier sweeps keep their folders
    tasks, inject = tuple(map(safe_name, run.tasks)), tuple(map(safe_name, run.inject))
    tail = f"_seed_{run.seed}_{run.key}"
    room = NAME_LIMIT - len(f"{run.kind}_") - len(tail) - (len("_from_") if inject else 0)
    if not inject:
        return f"{run.kind}_{_fit(tasks, room)}{tail}"
    half = room // 2
    shown = _fit(tasks, max(half, room - len("+".join(inject))))
    return f"{run.kind}_{shown}_from_{_fit(inject, room - len(shown))}{tail}"




def run_title(run: Run) -> str:
    """The run's label for the terminal (progress, failures): `Run.label` where it holds at most
    NAME_LIMIT characters, else its `run_name`, which says how many tasks it leaves out."""
    return run.label if len(run.label) <= NAME_LIMIT else run_name(run)


#: The most characters of a sweep's name in its Tune experiment's folder name.
SWEEP_NAME_LIMIT = 48

#: The longest trial id Tune appends to a trial's folder name (`5f2a1_00000`, more digits past
#: 100,000 trials), with room to spare.
TRIAL_ID_LIMIT = 16


def experiment_name(sweep: str, stamp: str, unique: str) -> str:
    """The folder of one invocation's Tune experiment: `<sweep name>-<stamp>-<unique>`, the
    sweep's name made filesystem-safe and cut to SWEEP_NAME_LIMIT characters."""
    return f"{safe_name(sweep)[:SWEEP_NAME_LIMIT]}-{stamp}-{unique}"


def bundle_name(runs: list[Run], key: str) -> str:
    """The name of a bundle's trial: its run's `run_name` for a bundle of one, else
    `bundle_<n>_seed_<seed>_<bundle key's first 8>`."""
    if len(runs) == 1:
        return run_name(runs[0])
    return f"bundle_{len(runs)}_seed_{runs[0].seed}_{key[:8]}"


def longest_paths(out: str | Path, store: str | None, sweep: str, host: str | None = None) -> dict[str, Path]:
    """{what: the deepest path of it that a sweep writes, with every name at its longest}: a
    TensorBoard event file (tensorboardX names it after the host), a file in a Tune trial's folder,
    a run's checkpoint being written (`atomic.atomic_path`'s temporary name). `store`: a local
    store's folder (None: OUT/store; a URI is not a local path and is left out)."""
    out = Path(os.path.abspath(out))  # not resolve(): a path too long for the file system cannot be resolved
    host = host or socket.gethostname()
    name = "n" * NAME_LIMIT
    events = f"events.out.tfevents.{'9' * 10}.{host}.{'9' * 10}.{'9' * 10}"  # time, host, pid and count
    experiment = experiment_name(sweep, "20260101-000000", "abcdef")
    paths = {"TensorBoard run": out / "tensorboard" / name / events,
             "Tune trial": out / "tune" / experiment / f"{name}_{'0' * TRIAL_ID_LIMIT}" / events}
    if store is None or "://" not in store:
        root = Path(os.path.abspath(store)) if store else out / "store"
        paths["run checkpoint"] = root / "runs" / ("k" * 20) / f"checkpoint.pt.tmp-{'0' * 32}"
        paths["run network"] = root / "runs" / ("k" * 20) / f"model.pt.tmp-{'0' * 32}.tmp-{'0' * 32}"  # staged, then saved
    return paths
