"""Items without training interactions: ID embeddings borrowed from their nearest seen items by text.

No training portion holds an unseen item (a cold item of the ``cold_items``
protocol, or one that occurs only as a validation or test target), so its
ID embedding was never trained as a positive: it is its random
initialisation, or pushed down as a negative. A model that reads text can do
better: when it scores, the unseen item's ID row is replaced by
``unseen_item_scale`` x the mean ID embedding of the ``unseen_item_neighbours``
seen items whose knowledge vectors are most similar to its own (cosine). The
row then enters the sequence encoder and the sequence score like any other,
next to the item's own adapted text (``text_in_items``).

By default training never reads the borrowed rows (an unseen item is never a
positive, and under the cold-item protocol never a negative either), so
training is unchanged; evaluation (validation included) and serving use them.
The scale shrinks what the neighbours lend: a copied row would also copy their
popularity. Both settings were chosen on validation (docs/guides/cold-items.md).

``unseen_item_training`` (a probability, 0 = off) teaches the model to score
with borrowed rows: at every training step each seen item with a knowledge
vector reads, with that probability, the same borrowed row (the scaled mean of
its nearest *other* seen items' ID rows, detached: only the model learns from
it, not the lenders) in place of its own, as input and as candidate alike, as
an unseen item would when scored (ID dropout towards the text, as DropoutNet
does for cold-start items).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


class BorrowedEmbeddings(nn.Module):
    """Which items borrow and from whom; the lenders are found once, the first time the model scores.

    Lazily, because a training-only run never needs them and finding them is
    O(unseen x seen) (a synthetic 1M-item catalogue is almost all unseen).
    Nothing here is saved in checkpoints: it follows from the data.
    """

    def __init__(self, unseen: torch.Tensor, item_text_mask: torch.Tensor, neighbours: int, scale: float,
                 chunk_entries: int = 1 << 25, training_rate: float = 0.0) -> None:
        super().__init__()
        unseen = unseen.clone()
        unseen[0] = False  # padding
        borrowers = torch.nonzero(unseen & item_text_mask).squeeze(1)  # [Z] unseen items with a knowledge vector
        lenders_pool = ~unseen & item_text_mask
        lenders_pool[0] = False
        self.neighbours = min(neighbours, int(lenders_pool.sum()))
        self.scale = float(scale)
        self.chunk_entries = chunk_entries
        if self.neighbours == 0:
            borrowers = borrowers[:0]
        slot = torch.full((len(unseen),), -1, dtype=torch.long)
        slot[borrowers] = torch.arange(len(borrowers))
        self.register_buffer("unseen", unseen, persistent=False)  # [N] (padding excluded)
        self.register_buffer("item_text_mask", item_text_mask, persistent=False)  # [N]
        self.register_buffer("borrowers", borrowers, persistent=False)  # [Z]
        self.register_buffer("slot", slot, persistent=False)  # [N] row in `lenders`, -1: not a borrower
        self.register_buffer("lenders_pool", lenders_pool, persistent=False)  # [N]
        self.register_buffer("lenders", torch.zeros(0, self.neighbours, dtype=torch.long), persistent=False)
        self.training_rate = float(training_rate)  # unseen_item_training
        self.lender_count = int(lenders_pool.sum())  # seen items with a knowledge vector
        # [N, k] every seen item's nearest other seen items (found the first time training borrows)
        self.register_buffer("seen_lenders", torch.zeros(0, self.neighbours, dtype=torch.long), persistent=False)

    @property
    def from_text(self) -> torch.Tensor:
        """Unseen items with a knowledge vector: what a text-reading model scores from text alone. ``[N]`` bool"""
        return self.unseen & self.item_text_mask

    @property
    def active(self) -> bool:
        return len(self.borrowers) > 0

    def with_settings(self, neighbours: int, scale: float) -> BorrowedEmbeddings:
        """The same items borrowing with other settings (choosing them on validation: one trained model)."""
        return BorrowedEmbeddings(self.unseen, self.item_text_mask, neighbours, scale, self.chunk_entries,
                                  self.training_rate)

    def _nearest_seen(self, item_text: torch.Tensor, items: torch.Tensor, exclude_self: bool) -> torch.Tensor:
        """The ``k`` seen items nearest to each of ``items`` ``[Z]`` by knowledge-vector cosine (never the item
        itself when ``exclude_self``), searched in chunks of at most ``chunk_entries`` similarities. ``[Z, k]``"""
        unit = F.normalize(item_text.float(), dim=-1)  # [N, D]
        pool = torch.nonzero(self.lenders_pool).squeeze(1)  # [S]
        pool_unit = unit[pool]  # [S, D]
        step = max(1, self.chunk_entries // max(1, len(pool)))
        found = [torch.zeros(0, self.neighbours, dtype=torch.long, device=items.device)]
        chunks = range(0, len(items), step)
        for start in tqdm(chunks, desc="nearest seen items by text", unit="chunk", disable=len(chunks) < 20):
            part = items[start:start + step]  # [z]
            sims = unit[part] @ pool_unit.T  # [z, S]
            if exclude_self:
                sims = sims.masked_fill(pool[None, :] == part[:, None], float("-inf"))
            found.append(pool[sims.topk(self.neighbours, dim=1).indices])  # [z, k]
        return torch.cat(found)

    def find_lenders(self, item_text: torch.Tensor) -> torch.Tensor:
        """The ``k`` seen items nearest to each borrower by knowledge-vector cosine. ``[Z, k]``"""
        if len(self.lenders) != len(self.borrowers):
            self.lenders = self._nearest_seen(item_text, self.borrowers, exclude_self=False)
        return self.lenders

    @property
    def trains(self) -> bool:
        """Whether training steps borrow (``unseen_item_training`` > 0 and someone to borrow from)."""
        return self.training_rate > 0 and 0 < self.neighbours < self.lender_count

    def borrow_at_random(self, ids: torch.Tensor, weight: torch.Tensor, item_text: torch.Tensor,
                         items: torch.Tensor | None = None) -> torch.Tensor:
        """Training: ``ids`` (rows of ``items``, every item when None) where each seen item drawn with
        probability ``training_rate`` (one draw per item per step) reads its borrowed row instead. ``[n, H]``"""
        if len(self.seen_lenders) != len(self.unseen):
            lenders = torch.zeros(len(self.unseen), self.neighbours, dtype=torch.long, device=self.unseen.device)
            pool = torch.nonzero(self.lenders_pool).squeeze(1)
            lenders[pool] = self._nearest_seen(item_text, pool, exclude_self=True)
            self.seen_lenders = lenders
        drawn = (torch.rand(len(self.unseen), device=ids.device) < self.training_rate) & self.lenders_pool  # [N]
        drawn = drawn if items is None else drawn[items]  # [n]
        where = torch.nonzero(drawn).squeeze(1)  # rows of `ids` that borrow this step
        if not len(where):
            return ids
        owners = where if items is None else items[where]
        borrowed = self.scale * weight[self.seen_lenders[owners]].mean(dim=1).detach()  # [w, H]
        return ids.index_copy(0, where, borrowed)

    def replace(self, ids: torch.Tensor, weight: torch.Tensor, item_text: torch.Tensor,
                items: torch.Tensor | None = None) -> torch.Tensor:
        """``ids`` (the ID rows of ``items``, or of every item when None) with the borrowers' rows replaced by
        the scaled mean of their lenders' rows of ``weight`` (the ID embedding table). ``[n, H]``"""
        lenders = self.find_lenders(item_text)  # [Z, k]
        if items is None:
            borrowed = self.scale * weight[lenders].mean(dim=1)  # [Z, H]
            return ids.index_copy(0, self.borrowers, borrowed)
        slot = self.slot[items]  # [n]
        where = torch.nonzero(slot >= 0).squeeze(1)  # rows of `ids` that borrow
        if not len(where):
            return ids
        borrowed = self.scale * weight[lenders[slot[where]]].mean(dim=1)  # [w, H]
        return ids.index_copy(0, where, borrowed)
