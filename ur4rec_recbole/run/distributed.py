"""Multi-GPU training (RecBole's DDP) for UR4Rec and every RecBole model.

Mirrors ``recbole.quick_start.run`` with ``nproc``/``world_size``/``ip``/
``port``/``group_offset``: one process per GPU is spawned, each builds the
configuration with ``local_rank`` set (RecBole's ``Config`` then joins the
NCCL process group and wraps the model), and every process trains through
:func:`ur4rec_recbole.run.single.run`, so the spawned processes build our
models with our Config and look-ups. Rank 0 writes the results and returns
them through a queue.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ur4rec_recbole.run.single import run


def _run_rank(rank: int, model: str, dataset: str, config_file_list: Sequence[str] | None, ddp: dict,
              cmd_overrides: Mapping[str, str], results_path: str | None, queue) -> None:
    results = run(model=model, dataset=dataset, config_file_list=config_file_list,
                  config_dict={**ddp, "local_rank": rank}, cmd_overrides=cmd_overrides,
                  results_path=results_path if rank == 0 else None)
    if dist.is_initialized():
        dist.destroy_process_group()
    if rank == 0:
        queue.put(results)


def run_distributed(model: str, dataset: str, config_file_list: Sequence[str] | None = None,
                    cmd_overrides: Mapping[str, str] | None = None, nproc: int = 1, world_size: int = -1,
                    ip: str = "localhost", port: str = "5678", group_offset: int = 0,
                    results_path: str | os.PathLike | None = None) -> dict | None:
    """Spawn ``nproc`` local processes of a ``world_size``-process group; rank 0's results (or None)."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    # RecBole's Config joins the group with backend="nccl" and pins cuda:<local_rank>
    if torch.cuda.device_count() < nproc:
        raise RuntimeError(f"--nproc {nproc} needs {nproc} CUDA GPUs (RecBole's DDP uses NCCL); "
                           f"{torch.cuda.device_count()} visible")
    cmd_overrides = dict(cmd_overrides or {})
    cmd_overrides.setdefault("gpu_id", ",".join(str(i) for i in range(nproc)))  # RecBole wants >= nproc ids
    world_size = nproc if world_size == -1 else world_size
    ddp = {"world_size": world_size, "ip": ip, "port": str(port), "nproc": nproc, "offset": group_offset}
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_run_rank, args=(model, dataset, list(config_file_list or []), ddp, cmd_overrides,
                              None if results_path is None else str(results_path), queue),
             nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()
