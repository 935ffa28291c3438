"""Data-parallel training (RecBole's DDP) for UR4Rec and every RecBole model, on GPUs or CPU processes.

Mirrors ``recbole.quick_start.run`` with ``nproc``/``world_size``/``ip``/
``port``/``group_offset``: ``nproc`` processes are spawned on this machine,
each builds the configuration with ``local_rank`` set (our ``Config`` then
joins the process group: NCCL and ``cuda:<local_rank>`` with GPUs, gloo on the
CPU without), and every process trains through
:func:`ur4rec_recbole.run.single.run`, with RecBole's ``fit`` and its
``DistributedSampler``. Global rank 0 alone writes (``ur4rec_recbole/ranks.py``)
and returns its results through a queue. Several machines: run the same
command on each, with ``--world_size`` (all processes), ``--ip``/``--port`` of
the first machine, and ``--group_offset`` = the number of processes on the
machines before this one.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ur4rec_recbole.errors import InputError, one_line
from ur4rec_recbole.run.single import run


def _run_rank(local_rank: int, model: str, dataset: str, config_file_list: Sequence[str] | None, ddp: dict,
              cmd_overrides: Mapping[str, str], results_path: str | None, queue) -> None:
    try:
        results = run(model=model, dataset=dataset, config_file_list=config_file_list,
                      config_dict={**ddp, "local_rank": local_rank}, cmd_overrides=cmd_overrides,
                      results_path=results_path)
    except BaseException as err:  # torch stops the other processes; the parent reports bad input in one line
        queue.put({"error": one_line(err), "user": isinstance(err, (ValueError, OSError))})
        raise
    if dist.is_initialized():
        dist.destroy_process_group()
    if local_rank + ddp["offset"] == 0:
        queue.put({"results": results})


def _wants_gpu(cmd_overrides: Mapping[str, str]) -> bool:
    return str(cmd_overrides.get("use_gpu", "True")).strip() not in ("False", "false", "0")


def run_distributed(model: str, dataset: str, config_file_list: Sequence[str] | None = None,
                    cmd_overrides: Mapping[str, str] | None = None, nproc: int = 1, world_size: int = -1,
                    ip: str = "localhost", port: str = "5678", group_offset: int = 0,
                    results_path: str | os.PathLike | None = None) -> dict | None:
    """Spawn ``nproc`` local processes of a ``world_size``-process group; rank 0's results (None elsewhere).

    Processes use the GPUs when there are at least ``nproc`` (and ``use_gpu`` is
    not False), else the CPU; ``world_size`` defaults to ``nproc`` (one machine).
    """
    world_size = nproc if world_size == -1 else world_size
    if nproc < 1 or world_size < 1:
        raise InputError(f"--nproc ({nproc}) and --world_size ({world_size}) must be at least 1")
    if not 0 <= group_offset <= world_size - nproc:
        raise InputError(f"--group_offset {group_offset} with --nproc {nproc} does not fit --world_size {world_size}: "
                         f"give each machine the number of processes on the machines before it (0 on the first)")
    cmd_overrides = dict(cmd_overrides or {})
    gpus = torch.cuda.device_count()
    if 0 < gpus < nproc and _wants_gpu(cmd_overrides):
        raise InputError(f"--nproc {nproc} needs {nproc} GPUs and {gpus} are visible: lower --nproc, "
                         f"or pass --use_gpu=False to run the processes on the CPU")
    if gpus and _wants_gpu(cmd_overrides):
        cmd_overrides.setdefault("gpu_id", ",".join(str(i) for i in range(nproc)))  # RecBole wants >= nproc ids
    ddp = {"world_size": world_size, "ip": ip, "port": str(port), "nproc": nproc, "offset": group_offset}
    queue = mp.get_context("spawn").SimpleQueue()
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)  # "Terminating process ..." when another failed: the error says enough
    try:
        mp.spawn(_run_rank, args=(model, dataset, list(config_file_list or []), ddp, cmd_overrides,
                                  None if results_path is None else str(results_path), queue),
                 nprocs=nproc, join=True)
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        while not queue.empty():  # bad input: the one line the process would have printed; else the traceback
            message = queue.get()
            if message.get("user"):
                raise InputError(message["error"]) from None
        raise
    finally:
        spawn_log.setLevel(level)
    while not queue.empty():
        message = queue.get()
        if "results" in message:
            return message["results"]
    return None
