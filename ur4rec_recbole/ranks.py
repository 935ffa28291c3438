"""Who writes under RecBole's DDP: global rank 0 alone; the other processes wait for its files.

RecBole's ``Config`` joins the process group (``config/__init__.py`` picks gloo
on the CPU, NCCL on GPUs); ``single_spec`` is False in every process of a
group. Global rank = ``local_rank + offset`` (``--group_offset``: the rank of a
machine's first process), so on several machines only the first process of
the first machine writes checkpoints, texts, vectors and ``--results``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch.distributed as dist


def in_group(config) -> bool:
    """True in a process of a DDP group (``--nproc``/``--world_size``)."""
    return not config["single_spec"] and dist.is_initialized()


def global_rank(config) -> int:
    """This process's rank in the whole group (0 outside DDP)."""
    return dist.get_rank() if in_group(config) else 0


def is_writer(config) -> bool:
    """True in the one process that writes files: global rank 0, or the only process."""
    return global_rank(config) == 0


@contextmanager
def writer_first(config) -> Iterator[None]:
    """Run the body in global rank 0 first, then in each other machine's first process, then in the rest.

    The body writes files that later ones only read (atomic files, texts,
    vectors): with a shared folder every other process finds them made; a
    machine without one makes its own copy once, in its first process
    (``local_rank`` 0), before its other processes read it. Every process
    passes two barriers, so none races another to write the same file.
    """
    if not in_group(config):
        yield
        return
    stage = 0 if dist.get_rank() == 0 else 1 if config["local_rank"] == 0 else 2
    for _ in range(stage):
        dist.barrier()
    yield
    for _ in range(2 - stage):
        dist.barrier()


def from_writer(config, value: Any) -> Any:
    """``value`` as global rank 0 has it (a checkpoint's name, a state read from its file); unchanged outside DDP."""
    if not in_group(config):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
