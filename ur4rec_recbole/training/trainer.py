"""Trainers: safe, unique, data-checked checkpoints for every model, staged training for UR4Rec.

RecBole 1.2.1 pickles its whole ``Config`` into checkpoints, which
``torch.load`` refuses under the ``weights_only=True`` default of torch >= 2.6.
Instead of switching safe loading off, we store only tensors and plain
Python values, so our checkpoints load safely and foreign files are still
refused. Each run writes its own file (time to the microsecond, seed, random
suffix: two runs started in the same second never share one; a resumed run
writes a new file and leaves its source alone), and each checkpoint records
the data it was trained on (``data.fingerprint``), so resuming or testing it on
other data is refused. Each checkpoint also carries a SHA-256 of its own contents
(``content_sha256``, :func:`seal`); loading checks it and the zip's CRCs, so a
file changed after it was written (a flipped byte inside a tensor, an edited
setting) is refused in one line. A checkpoint holds tensors and plain values
only, and its settings are read as literals, never run (docs/security.md).
``fit`` is RecBole's, untouched: we only hook
``_train_epoch``, ``_valid_epoch``, ``_save_checkpoint``, ``resume_checkpoint`` and ``evaluate``.

Under RecBole's DDP (``--nproc``, ``run/distributed.py``) the same trainers run
in every process: on the CPU the model is wrapped without ``device_ids`` (RecBole
passes ``cuda:<local_rank>``'s), global rank 0 alone writes checkpoints and
reads the ones loaded (the others get the weights through the process group),
and evaluation ranks every process's users together instead of averaging the
processes' metrics (:class:`AllUsersEvaluator`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import zipfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from time import time
from typing import Any

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.nn.parallel import DistributedDataParallel

from ur4rec_recbole.config.settings import parse_setting
from ur4rec_recbole.data.fingerprint import check_same_data, data_fingerprint
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.io import atomic_path, plain_config, plain_value
from ur4rec_recbole.ranks import from_writer, in_group, is_writer
from ur4rec_recbole.training.optimizers import load_optimizer_state, with_sparse_parameters
from ur4rec_recbole.training.stages import joint_stage

CHECKPOINT_FORMAT = "ur4rec-recbole/3"  # 2: records the data fingerprint; 3: and a hash of its contents
DIGEST_KEY = "content_sha256"


def _now() -> datetime:
    return datetime.now()


def checkpoint_name(config) -> str:
    """``<model>-<dataset>-<date>-<time.microseconds>-seed<k>-<random>.pth``: unique per run."""
    return (f"{config['model']}-{config['dataset']}-{_now():%Y%m%d-%H%M%S-%f}-seed{config['seed']}-"
            f"{secrets.token_hex(3)}.pth")


def content_digest(state: Mapping) -> str:
    """SHA-256 of a checkpoint's contents (``DIGEST_KEY`` aside): every tensor's dtype, shape and bytes, every value.

    Computed on the loaded objects, so it does not depend on how torch lays
    out the file, and any changed tensor element or setting changes it.
    """
    digest = hashlib.sha256()

    def feed(name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu()
            if tensor.is_sparse:
                tensor = tensor.coalesce()
                feed(f"{name}#indices", tensor.indices())
                feed(f"{name}#values", tensor.values())
                return
            tensor = tensor.contiguous().reshape(-1)
            digest.update(f"{name}\0tensor\0{tensor.dtype}\0{tuple(value.shape)}\0".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, Mapping):
            digest.update(f"{name}\0dict\0{len(value)}\0".encode())
            for key in sorted(value, key=repr):
                feed(f"{name}/{key!r}", value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"{name}\0{type(value).__name__}\0{len(value)}\0".encode())
            for i, item in enumerate(value):
                feed(f"{name}/{i}", item)
        else:
            digest.update(f"{name}\0{type(value).__name__}\0{value!r}\0".encode())

    for key in sorted(k for k in state if k != DIGEST_KEY):
        feed(str(key), state[key])
    return digest.hexdigest()


def seal(state: dict) -> dict:
    """``state`` with its :func:`content_digest` stored under ``DIGEST_KEY`` (what :func:`read_checkpoint` checks)."""
    return {**{k: v for k, v in state.items() if k != DIGEST_KEY}, DIGEST_KEY: content_digest(state)}


def _changed(path: Path, what: str) -> InputError:
    return InputError(f"{path} was changed after it was written ({what}): do not use it; train again, or copy "
                      "the checkpoint again from where it was saved")


def check_integrity(path: Path, state: Mapping) -> None:
    """The zip's CRC-32 of every member, then the stored content hash; a mismatch is one :class:`InputError`."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:  # zlib errors surface as zipfile's
        raise _changed(path, f"its zip archive cannot be read: {err}") from None
    except Exception as err:  # zlib.error and friends: a damaged member
        raise _changed(path, f"a member cannot be decompressed: {type(err).__name__}") from None
    if bad is not None:
        raise _changed(path, f"zip member {bad} fails its CRC-32 check")
    stored = state.get(DIGEST_KEY)
    if not isinstance(stored, str):
        raise InputError(f"{path} carries no content hash ({DIGEST_KEY}), so it cannot be verified; train a new model")
    if content_digest(state) != stored:
        raise _changed(path, "its contents no longer match the SHA-256 stored in it")


def read_checkpoint(path: str | os.PathLike, device: Any = "cpu") -> dict:
    """Read a checkpoint written by this package with safe loading on; anything else is one :class:`InputError`.

    A checkpoint whose bytes changed after it was saved is refused (:func:`check_integrity`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # pickle errors come in many types
        first = (str(err).splitlines() or [""])[0].split(". ")[0][:120]
        raise InputError(
            f"{path} cannot be loaded with torch.load(weights_only=True): it was not written by ur4rec-recbole "
            f"({type(err).__name__}: {first}); pass a checkpoint that a run of this package saved (saved/*.pth)"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise InputError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint" +
                         (f" (format {found}: written by an older version; train a new model)" if found else ""))
    check_integrity(path, state)
    check_stored_settings(path, state)
    return state


def check_stored_settings(path: Path, state: Mapping) -> None:
    """Every stored setting is a plain value, and no string of them is Python code (a crafted file).

    They are read as literals anyway (the Config never evaluates a value);
    refusing code here names the checkpoint and the key.
    """
    config = state.get("config")
    if not isinstance(config, dict):
        raise InputError(f"{path} stores no configuration; pass a checkpoint that a run of this package saved")
    for key, value in config.items():
        if isinstance(value, str):
            try:
                parse_setting(str(key), value, where="stored setting")
            except InputError as err:
                raise InputError(f"{path}: {err}; do not use this checkpoint") from None


def check_checkpoint(state: Mapping, config, path: str | os.PathLike, action: str,
                     fingerprint: Mapping | None = None) -> None:
    """Refuse a checkpoint of another model, or one trained on other data than ``fingerprint`` describes."""
    if str(state["config"]["model"]).lower() != str(config["model"]).lower():
        raise InputError(f"cannot {action} {path}: it holds a {state['config']['model']} model, not {config['model']}")
    current = fingerprint if fingerprint is not None else data_fingerprint(config)
    check_same_data(state.get("data"), current, path, action)


ROW_KEYS = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")  # one row per evaluated sample


def saved_other_parameters(model: torch.nn.Module) -> dict:
    """``model.other_parameter()`` without submodules: RecBole's SASRecF/FDSA list a whole layer there,
    whose tensors ``state_dict`` already holds; pickling the module would make the checkpoint need its
    class to load, which ``torch.load(weights_only=True)`` refuses (the run then failed at testing)."""
    return {key: value for key, value in model.other_parameter().items()
            if not isinstance(value, torch.nn.Module)}


class AllUsersEvaluator:
    """RecBole's evaluator over the samples (users) of every DDP process, not one process's share.

    RecBole 1.2.1 evaluates each process's shard and averages the metrics
    weighted by ``len(batched_data)`` (4 for every batch: the tuple's length),
    and its ``DistributedSampler`` repeats the first users to give every process
    as many: metrics then differ from one process's. Here each process's rows
    are gathered, the repeats dropped, and every process computes the metrics
    of all users, as one process would.
    """

    def __init__(self, evaluator) -> None:
        self.evaluator = evaluator
        self.samples = 0  # set by the trainer before each evaluation: the dataloader's sample_size

    def evaluate(self, struct):
        world = torch.distributed.get_world_size()
        # DistributedSampler(shuffle=False) gives rank r the samples r, r + world, ...; its padding comes last
        mine = {key: struct[key] for key in ROW_KEYS if key in struct}
        gathered: list = [None] * world
        torch.distributed.all_gather_object(gathered, mine)
        for key in mine:
            struct.set(key, torch.cat([rows[key][:len(range(r, self.samples, world))]
                                       for r, rows in enumerate(gathered)]))
        return self.evaluator.evaluate(struct)


class SafeCheckpointMixin:
    """Checkpoint handling that survives ``torch.load(weights_only=True)``.

    Also records, per epoch, the training seconds, the loss and the validation
    result, which the run script reports (``epoch_history``).
    """

    def __init__(self, config, model) -> None:
        if in_group(config) and config["device"].type == "cpu":
            # RecBole wraps the model with device_ids=[local_rank], which DDP refuses for a CPU module
            config["single_spec"] = True
            try:
                super().__init__(config, model)
            finally:
                config["single_spec"] = False
            self.wrap_for_ddp()  # no SyncBatchNorm: gloo has none
        else:
            super().__init__(config, model)
        if in_group(config):
            self.evaluator = AllUsersEvaluator(self.evaluator)
        self.epoch_history: list[dict] = []
        # every rank loads the file rank 0 writes: rank 0's name wins
        self.saved_model_file = from_writer(config, os.path.join(self.checkpoint_dir, checkpoint_name(config)))
        self._fingerprint: dict | None = None

    def wrap_for_ddp(self) -> None:
        """(Re)build the DDP wrapper, which synchronises the gradients of the parameters that train now.

        DDP fixes that set when it is built: a stage that freezes a group
        (``UR4RecTrainer``) wraps the model again, or DDP waits for gradients that never come.
        """
        ids = [self.config["local_rank"]] if self.device.type == "cuda" else None  # DDP refuses ids for a CPU module
        self.distributed_model = DistributedDataParallel(self.model, device_ids=ids)

    def _map_reduce(self, result, num_sample):
        return result  # AllUsersEvaluator already ranked every process's users

    @property
    def data_fingerprint(self) -> dict:
        """The fingerprint of this run's data, computed once (after the dataset built its vectors)."""
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(self.config)
        return self._fingerprint

    def _globally_weighted(self, loss_func):
        """``loss_func`` scaled so that DDP's mean over processes is the mean over the global batch.

        Each process's loss is a mean over its own terms (rows; for UR4Rec its
        training positions, ``model.loss_positions``); DDP averages the processes'
        gradients with equal weights, right only when every process holds as
        many terms. Scaling by ``world_size * mine / all`` weighs each term once.
        """
        count = getattr(self.model, "loss_positions", len)

        def weighted(interaction):
            losses = loss_func(interaction)
            mine = torch.tensor([float(count(interaction))], device=self.device)
            total = mine.clone()
            torch.distributed.all_reduce(total)
            scale = float(mine * torch.distributed.get_world_size() / total)
            return tuple(l * scale for l in losses) if isinstance(losses, tuple) else losses * scale

        return weighted

    # -- timing and learning curves --------------------------------------
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time()
        if in_group(self.config):
            loss_func = self._globally_weighted(loss_func or self.model.calculate_loss)
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        total = sum(loss) if isinstance(loss, tuple) else loss
        self.epoch_history.append(
            {"epoch": epoch_idx, "train_seconds": time() - start, "train_loss": float(total)}
        )
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self.epoch_history:
            self.epoch_history[-1]["valid"] = plain_value(dict(result))
        return score, result

    # -- checkpoints ------------------------------------------------------
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not is_writer(self.config):  # RecBole tests local_rank: each machine's first process wrote
            return
        path = Path(kwargs.pop("saved_model_file", self.saved_model_file))
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": plain_config(self.config),
            "data": self.data_fingerprint,
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": saved_other_parameters(self.model),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
        }
        fix = f"set --checkpoint_dir to a writable folder (now {path.parent})"
        with atomic_path(path, fix=fix) as tmp:  # never leave a half-written checkpoint behind
            torch.save(seal(state), tmp)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {path}")

    def load_checkpoint(self, path: str | os.PathLike, action: str = "load") -> dict:
        """Read a checkpoint written by :meth:`_save_checkpoint` and check that it fits this model and data.

        Under DDP rank 0 reads it (after writing it: no other process reads a
        file being replaced) and sends it to the others, which need no copy.
        """
        state = None
        if is_writer(self.config):
            state = read_checkpoint(path, self.device)
            check_checkpoint(state, self.config, path, action, self.data_fingerprint)
        state = from_writer(self.config, state)
        return state

    def _load_weights(self, state: Mapping, path: str | os.PathLike) -> None:
        try:
            self.model.load_state_dict(state["state_dict"])
        except RuntimeError as err:  # size mismatch: other settings (or data) than the checkpoint's
            detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line),
                          str(err).splitlines()[0])
            raise InputError(
                f"{path} does not fit {self.config['model']} on dataset {self.config['dataset']} with these "
                f"settings ({detail}); use the settings it was trained with (stored in it under 'config')"
            ) from err
        self.model.load_other_parameter(state.get("other_parameter"))

    def resume_checkpoint(self, resume_file):
        """Continue from ``resume_file``; this run's checkpoints go to a new file, the source stays as it is."""
        state = self.load_checkpoint(resume_file, action="resume")
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self._load_weights(state, resume_file)
        if self.optimizer is not None:
            load_optimizer_state(self.optimizer, state["optimizer"], resume_file)
        self._save_checkpoint(state["epoch"], verbose=False)  # the best so far, should no later epoch beat it
        self.logger.info(f"Checkpoint {resume_file} loaded. Resume training from epoch {self.start_epoch}; "
                         f"checkpoints of this run: {self.saved_model_file}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            path = model_file or self.saved_model_file
            state = self.load_checkpoint(path, action="test")
            self._load_weights(state, path)
            self.logger.info(f"Loading model structure and parameters from {path}")
        if eval_data and isinstance(self.evaluator, AllUsersEvaluator):
            self.evaluator.samples = eval_data.sample_size
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


def with_safe_checkpoints(trainer_class: type) -> type:
    """Return ``trainer_class`` with :class:`SafeCheckpointMixin` in front of it."""
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    return type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})


class _FittedWhenBuilt(Trainer):
    """RecBole's Trainer for a model that has nothing to learn: no optimizer, no training batches."""

    def _build_optimizer(self, **kwargs):
        return None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False) -> float:
        return 0.0  # the model was fitted from the training portions when it was built


class NonLearnedTrainer(SafeCheckpointMixin, _FittedWhenBuilt):
    """One pass for the non-learned baselines (``model/baselines.py``): validate, save, test.

    As RecBole's ``TraditionalTrainer`` (Pop, ItemKNN) the run has one epoch
    whatever ``epochs`` says; unlike it, the epoch reads no training batch (the
    counts were taken when the model was built) and builds no optimizer. RecBole's
    ``fit`` is untouched: it validates once and saves the checkpoint that the
    test then loads.
    """

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.epochs = 1
        self.eval_step = min(self.eval_step, 1)  # the one epoch is validated (and saved)


class UR4RecTrainer(SafeCheckpointMixin, Trainer):
    """RecBole's Trainer plus multi-stage schedules (``stages`` in the config).

    Each stage names its epochs, which parameter groups train, and any loss
    settings it overrides (see ``properties/model/UR4Rec.yaml``). The stage is
    chosen from the epoch index, so resuming mid-schedule lands in the right
    stage. Early stopping's patience restarts at every stage boundary.
    """

    def __init__(self, config, model) -> None:
        self.stages = config["stages"] or [joint_stage(config["epochs"])]  # parsed by UR4Rec.check_settings
        super().__init__(config, model)
        self.current_stage: str | None = None

    def _build_optimizer(self, **kwargs):
        """RecBole's learner, plus lazy Adam for the model's sparse parameters (``training/optimizers.py``)."""
        learning_rate = kwargs.get("learning_rate", self.learning_rate)
        return with_sparse_parameters(self.model, lambda params: super(UR4RecTrainer, self)._build_optimizer(
            **{**kwargs, "params": params}), learning_rate)

    def stage_at(self, epoch_idx: int) -> dict:
        """The stage that owns epoch ``epoch_idx`` (0-based)."""
        end = 0
        for stage in self.stages:
            end += stage["epochs"]
            if epoch_idx < end:
                return stage
        return self.stages[-1]

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        stage = self.stage_at(epoch_idx)
        if stage["name"] != self.current_stage:
            if self.current_stage is not None:
                self.cur_step = 0
            self.current_stage = stage["name"]
            self.model.enter_stage(stage)
            if in_group(self.config):
                self.wrap_for_ddp()
            self.logger.info(set_color(f"stage '{stage['name']}'", "yellow") + f" from epoch {epoch_idx}: {stage}")
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_history[-1]["stage"] = stage["name"]
        return loss
