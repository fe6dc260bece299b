"""Experiment tracking of a sweep's runs: Tune callbacks on the driver, built from `tracking`.

After each epoch a trial (one bundle of runs, `plan.bundles`) reports every run's losses per task
under the run's name (`bundle_metrics`: `<run name>/train_loss/<task>`, `<run name>/val_loss/<task>`,
and the bundle's summed `val`); the callbacks send them on:
- TensorBoard (on by default): `OUT/tensorboard/<run name>/`, one TensorBoard run per sweep run,
  written with tensorboardX (a dependency of ray[tune]); the step is the epoch, 0-based as in the
  stored history. Our own callback rather than Tune's TBXLoggerCallback, whose runs are named by
  trial id and nested in Tune's experiment folders, one folder per sweep invocation.
- MLflow (`tracking.mlflow`): Ray's MLflowLoggerCallback, one MLflow run per trial (a bundle)
  with the trial's name, every numeric result as a metric at Tune's iteration (epoch + 1 for a
  bundle trained in one go).
- W&B (`tracking.wandb`): Ray's WandbLoggerCallback, one W&B run per trial with the trial's name.

A run's name says its kind, tasks, injected labels and seed, then its key's first 8 characters,
so that runs of a changed setting (keyed anew) keep their curves apart:
`pair_depth_zbuffer+normal_seed_0_3fa81c2b`. A name that would pass NAME_LIMIT (100) characters
(many tasks, long task names) keeps a readable prefix and the whole key instead:
`all_5_o_Clock_Shadow+Arched_Eyebrows+38_more_seed_0_<20-character key>`; the full task list is
in the run's record (`STORE/runs/<key>/result.json`). Names are thus short at any task count,
unique within a sweep (the key), and the same in every invocation. A run trained again under the same key (its result
lost, or resumed from its checkpoint in a later invocation) writes into the same TensorBoard run,
with the same values, since its training is deterministic. A trial of one run carries the run's
name (`trial_name`), so MLflow, W&B and Tune's own logs say it too; a trial of several runs is
named after its bundle.

Limits: a trial trained by Ray Train's DDP workers (`resources.workers`) reports no epochs, so it
has no curves; MLflow and W&B log from the driver, so a file store is the driver's disk.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

from ray import tune

from raytaskaff.config import SweepConfig
from raytaskaff.names import bundle_name, run_name
from raytaskaff.plan import Run

#: Prefixes of the per-task losses a trial reports (`epoch_metrics`): `train_loss/<task>`, `val_loss/<task>`.
LOSSES = ("train_loss/", "val_loss/")


def epoch_metrics(epoch: int, record: dict) -> dict[str, float]:
    """What a trial reports to Tune after `epoch` (0-based), from the training loop's record
    {"epoch", "train": {task: loss}, "val": {task: loss}}: flat keys, so that every tracker shows
    one group of curves for train and one for val."""
    return {"epoch": epoch, "val": sum(record["val"].values()),
            **{f"train_loss/{task}": loss for task, loss in record["train"].items()},
            **{f"val_loss/{task}": loss for task, loss in record["val"].items()}}


def bundle_metrics(epoch: int, records: dict[Run, dict]) -> dict[str, float]:
    """What a bundle's trial reports to Tune after `epoch`: each run's `epoch_metrics` under its
    `run_name` (`<run name>/train_loss/<task>`, `<run name>/val`), and the bundle's summed `val`."""
    out: dict[str, float] = {"epoch": epoch, "val": 0.0}
    for run, record in records.items():
        for key, value in epoch_metrics(epoch, record).items():
            if key != "epoch":
                out[f"{run_name(run)}/{key}"] = value
        out["val"] += sum(record["val"].values())
    return out


def _runs(trial) -> list[Run]:
    return [Run(**{k: tuple(v) if isinstance(v, list) else v for k, v in r.items()}) for r in trial.config["bundle"]["runs"]]


def trial_name(trial) -> str:
    """Tune's name for the trial of a bundle (TuneConfig.trial_name_creator): the `run_name` of a
    bundle of one run; `bundle_<n>_seed_<seed>_<bundle key's first 8>` of several."""
    return bundle_name(_runs(trial), trial.config["bundle"]["key"])


def trial_dirname(trial) -> str:
    """Tune's folder for the trial of a bundle (TuneConfig.trial_dirname_creator): its name and
    trial id, at most NAME_LIMIT + 1 + TRIAL_ID_LIMIT characters (`names.longest_paths`)."""
    return f"{trial_name(trial)}_{trial.trial_id}"


#: The most TensorBoard writers open at once: each holds 3 file descriptors and 2 threads, and a
#: 40-task sweep's bundles report hundreds of runs at a time (past a soft limit of 1,024 files).
OPEN_WRITERS = 64


class TensorBoardCallback(tune.Callback):
    """Writes each trial's per-task train and val losses, one scalar per loss per epoch, to a
    TensorBoard run `logdir/<run name>` (tags `train_loss/<task>`, `val_loss/<task>`, step =
    epoch). Flushes after every epoch, so that a TensorBoard open on `logdir` follows the sweep.
    At most OPEN_WRITERS writers stay open, the least recently used closed first; a run written
    again after its writer was closed gets another event file in its folder (TensorBoard reads
    them all), named apart by a count (`filename_suffix`)."""

    def __init__(self, logdir: str | os.PathLike, open_writers: int = OPEN_WRITERS) -> None:
        self.logdir = Path(logdir)
        self.open_writers = open_writers
        self._writers: dict[str, dict[str, object]] = {}  # trial id -> run name -> open writer
        self._order: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._opened = 0

    def _writer(self, trial_id: str, name: str):
        writers = self._writers.setdefault(trial_id, {})
        if name in writers:
            self._order.move_to_end((trial_id, name))
            return writers[name]
        while len(self._order) >= self.open_writers:
            old_trial, old_name = self._order.popitem(last=False)[0]
            self._writers[old_trial].pop(old_name).close()
        from tensorboardX import SummaryWriter

        self._opened += 1
        writer = writers[name] = SummaryWriter(str(self.logdir / name), filename_suffix=f".{os.getpid()}.{self._opened:08d}")
        self._order[(trial_id, name)] = None
        return writer

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if "epoch" not in result:
            return
        by_run: dict[str, dict[str, float]] = {}
        for key, value in result.items():
            name, _, tag = key.partition("/")
            if tag.startswith(LOSSES):
                by_run.setdefault(name, {})[tag] = value
        for name, losses in by_run.items():
            writer = self._writer(trial.trial_id, name)
            for tag, value in losses.items():
                writer.add_scalar(tag, value, global_step=result["epoch"])
            writer.flush()

    def _close(self, trial) -> None:
        for name, writer in self._writers.pop(trial.trial_id, {}).items():
            self._order.pop((trial.trial_id, name), None)
            writer.close()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._close(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:  # after its last retry
        self._close(trial)

    def on_experiment_end(self, trials, **info) -> None:
        for trial in trials:
            self._close(trial)


def callbacks(config: SweepConfig) -> list[tune.Callback]:
    """The tracking callbacks of `config.tracking`, TensorBoard's under `config.out`/tensorboard.
    MLflow and W&B are imported only here, when asked for (the config checked they are installed)."""
    tracking, found = config.tracking, []
    if tracking.tensorboard:
        found.append(TensorBoardCallback(Path(config.out).resolve() / "tensorboard"))
    if tracking.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = tracking.mlflow.tracking_uri
        if uri is not None and uri.startswith("file:"):
            # MLflow 3 refuses its file store unless asked for it: a config naming one has asked
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        found.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=tracking.mlflow.experiment or config.name,
                                          tags={"sweep": config.name}))
    if tracking.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        w = tracking.wandb
        found.append(WandbLoggerCallback(project=w.project or config.name, mode=w.mode,
                                         **({"entity": w.entity} if w.entity else {})))
    return found
