"""Which items a training loss scores: the whole catalogue or a sample (config ``train_negatives``).

Every softmax loss of UR4Rec (the cross-entropy of the fused score and the
retriever's InfoNCE) is a cross-entropy of each loss position's target
against a set of candidate items. A :class:`Candidates` holds that set for a
batch: the items scored (shared by all rows, so scores are one matrix
product), the column of each row's target, and an additive offset (the
log-q correction, and -inf for columns that must not count as negatives).

- ``none`` (default): every item id ``0..N-1``, exactly RecBole's full
  softmax (id 0 is padding, with a zero embedding, as there);
- ``uniform``: the batch's targets (each row uses only its own) plus
  ``train_negatives_count`` items drawn uniformly with replacement, shared by
  the batch; a drawn item equal to a row's target is masked for that row.
  Uniform q shifts every logit equally, so no correction is needed. With
  ``train_negatives_count >= N`` the whole catalogue is used instead of a
  sample, which equals the full softmax (tested);
- ``in_batch``: the other positions' targets are the negatives, corrected by
  ``-log q(item)`` with q the item's share of the training items (Yi et al.,
  RecSys 2019), so popular items are not over-penalised; duplicates of a
  row's own target are masked.

Cost per step: ``none`` is O(P x N); the samplers O(P x (P + S)), independent of N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Candidates:
    """The items a batch's softmax runs over."""

    items: torch.Tensor  # [C] item ids, scored for every row
    labels: torch.Tensor  # [P] column of each row's target in ``items``
    offset: torch.Tensor | None = None  # [P, C] added to the logits (log-q correction, -inf masks)
    whole: bool = False  # items is 0..N-1: callers may use the full tables instead of gathering rows

    def rows(self, keep: torch.Tensor) -> "Candidates":
        """The same items for the rows ``keep`` ``[P]`` (bool) only: their labels and offsets."""
        return Candidates(self.items, self.labels[keep], None if self.offset is None else self.offset[keep],
                          self.whole)

    def cross_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``logits`` ``[P, C]`` (scores of ``items``) against each row's target."""
        if self.offset is not None:
            logits = logits + self.offset
        return F.cross_entropy(logits, self.labels)


class FullSoftmax:
    """``none``: the whole catalogue."""

    def __init__(self, n_items: int, count: int, item_counts: torch.Tensor) -> None:
        self.n_items = n_items

    def candidates(self, targets: torch.Tensor) -> Candidates:
        return Candidates(torch.arange(self.n_items, device=targets.device), targets, whole=True)


def _own_target_only(targets: torch.Tensor) -> torch.Tensor:
    """``[P, P]`` offset: 0 on the diagonal, -inf where another row's target column holds the same item."""
    same = targets[:, None] == targets[None, :]  # [P, P]
    return torch.zeros(same.shape, device=targets.device).masked_fill(
        same & ~torch.eye(len(targets), dtype=torch.bool, device=targets.device), float("-inf"))


class UniformNegatives:
    """``uniform``: ``count`` items drawn uniformly (with replacement) and shared by the batch."""

    def __init__(self, n_items: int, count: int, item_counts: torch.Tensor) -> None:
        self.n_items, self.count = n_items, count

    def candidates(self, targets: torch.Tensor) -> Candidates:
        device = targets.device
        if self.count >= self.n_items:  # the whole catalogue: the full softmax
            drawn = torch.arange(self.n_items, device=device)
        else:
            drawn = torch.randint(1, self.n_items, (self.count,), device=device)  # [S], never padding
        rows = len(targets)
        own = torch.full((rows, rows), float("-inf"), device=device)
        own.fill_diagonal_(0.0)  # each row sees only its own target among the target columns
        hits = torch.zeros(rows, len(drawn), device=device).masked_fill(
            drawn[None, :] == targets[:, None], float("-inf"))  # [P, S] accidental hits
        return Candidates(torch.cat([targets, drawn]), torch.arange(rows, device=device),
                          torch.cat([own, hits], dim=1))


class InBatchNegatives:
    """``in_batch``: the batch's targets, corrected by ``-log q`` (q: share of the training items)."""

    def __init__(self, n_items: int, count: int, item_counts: torch.Tensor) -> None:
        counts = item_counts.double() + 1.0  # add-one: every item can be drawn
        self.log_q = (counts / counts.sum()).log().float()  # [N]

    def candidates(self, targets: torch.Tensor) -> Candidates:
        offset = _own_target_only(targets) - self.log_q.to(targets.device)[targets][None, :]  # [P, P]
        return Candidates(targets, torch.arange(len(targets), device=targets.device), offset)


NEGATIVE_SAMPLERS = {"none": FullSoftmax, "uniform": UniformNegatives, "in_batch": InBatchNegatives}


def training_item_counts(dataset, n_items: int) -> torch.Tensor:
    """How often each item id occurs in the users' training portions (zeros when the dataset has none). ``[N]``"""
    portions = getattr(dataset, "training_histories", None) or {}
    if not portions:
        return torch.zeros(n_items, dtype=torch.long)
    items = torch.as_tensor(np.concatenate([np.asarray(p, dtype=np.int64) for p in portions.values()]))
    return torch.bincount(items, minlength=n_items)[:n_items]
