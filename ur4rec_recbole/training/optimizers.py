"""Optimisers: the configured learner for dense parameters, lazy Adam for a sparse item embedding.

With sampled negatives (``train_negatives``) a step reads a few thousand rows
of the ``[N, H]`` item embedding, yet a dense gradient and a dense Adam update
still cost O(N) per step: at a million items that was most of the step. A
model that declares sparse parameters (``UR4Rec.sparse_parameters``: the item
embedding under sampled negatives) gets torch's ``SparseAdam`` for them (the
moments and the update touch only the rows a step read: "lazy" Adam) and the
configured learner for everything else. Models without them get the learner
alone, as RecBole builds it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ur4rec_recbole.errors import InputError


class DenseAndSparse:
    """Two optimisers stepped as one, with the interface RecBole's trainer uses (``zero_grad``, ``step``,
    ``state_dict``, ``load_state_dict``, ``param_groups``)."""

    def __init__(self, dense: torch.optim.Optimizer, sparse: torch.optim.Optimizer) -> None:
        self.dense, self.sparse = dense, sparse

    @property
    def param_groups(self) -> list[dict]:
        return self.dense.param_groups + self.sparse.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.dense.zero_grad(set_to_none=set_to_none)
        self.sparse.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable | None = None):
        loss = self.dense.step(closure)
        self.sparse.step()
        return loss

    def state_dict(self) -> dict:
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not is_split(state):
            raise InputError(f"the checkpoint's {KINDS[False]}, but this run's {KINDS[True]}; {RESUME_HINT}")
        self.dense.load_state_dict(state["dense"])
        self.sparse.load_state_dict(state["sparse"])


KINDS = {True: "optimizer trains the item embedding sparsely (lazy Adam under sampled train_negatives)",
         False: "optimizer is one dense optimizer"}
RESUME_HINT = "resume with the train_negatives, learner and weight_decay it was trained with"


def is_split(state: dict) -> bool:
    """Whether an optimizer state was saved by :class:`DenseAndSparse`."""
    return set(state) == {"dense", "sparse"}


def load_optimizer_state(optimizer, state: dict, source) -> None:
    """Load a checkpoint's optimizer ``state``; one line naming ``source`` when it is of the other kind."""
    saved, now = is_split(state), isinstance(optimizer, DenseAndSparse)
    if saved != now:
        raise InputError(f"{source}: the checkpoint's {KINDS[saved]}, but this run's {KINDS[now]}; {RESUME_HINT}")
    optimizer.load_state_dict(state)


def with_sparse_parameters(model: torch.nn.Module, build_dense: Callable[[Sequence[torch.nn.Parameter]], object],
                           learning_rate: float):
    """``build_dense(params)`` for the model's dense parameters, plus ``SparseAdam`` for its sparse ones."""
    sparse = list(getattr(model, "sparse_parameters", lambda: [])())
    if not sparse:
        return build_dense(list(model.parameters()))
    taken = {id(p) for p in sparse}
    dense = build_dense([p for p in model.parameters() if id(p) not in taken])
    return DenseAndSparse(dense, torch.optim.SparseAdam(sparse, lr=learning_rate))
