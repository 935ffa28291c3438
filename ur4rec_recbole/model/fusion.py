"""How sequence scores and retriever scores become one ranking (config ``fusion``).

Each fusion says which score vectors are trained with cross-entropy
(``train_logits``), how the final ranking score is made (``rank_scores``)
and what each scorer contributes to it (``parts``, shown with recommendations).
All tensors are ``[P, N]`` (positions or users by catalogue) except the
sequence state ``[P, H]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class NoFusion(nn.Module):
    """``none``: the sequence score alone (the retriever may still train by InfoNCE)."""

    uses_retriever = False
    reads_item_table = False  # True: the retriever scores items with SASRec's item table (``query``)
    reads_text = False  # True: the item table adds each item's adapted knowledge vector (``text_in_items``)

    def __init__(self, config, hidden: int) -> None:
        super().__init__()

    def train_logits(self, seq, ret, state) -> list[torch.Tensor]:
        return [seq]

    def rank_scores(self, seq, ret, state) -> torch.Tensor:
        return seq

    def parts(self, seq, ret, state) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequence and retriever parts of the ranking score (here the retriever's is 0)."""
        return seq, torch.zeros_like(seq)


class ItemTextFusion(NoFusion):
    """``item_text``: the sequence score alone, over an item table that adds each item's adapted knowledge
    vector (``text_in_items``, UniSRec-style); no retriever score is computed.

    What the text gives without the retriever: UR4Rec against this row is what
    the retriever itself adds (docs/results/retriever.md).
    """

    reads_text = True


class WeightedFusion(nn.Module):
    """``weighted``: ``seq + w * ret`` with one learned weight ``w``."""

    uses_retriever = True
    reads_item_table = False
    reads_text = True

    def __init__(self, config, hidden: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(float(config["fusion_weight"])))

    def retriever_part(self, ret, state) -> torch.Tensor:
        return self.weight * ret

    def fused(self, seq, ret, state) -> torch.Tensor:
        return seq + self.retriever_part(ret, state)

    def train_logits(self, seq, ret, state) -> list[torch.Tensor]:
        return [self.fused(seq, ret, state)]

    def rank_scores(self, seq, ret, state) -> torch.Tensor:
        return self.fused(seq, ret, state)

    def parts(self, seq, ret, state) -> tuple[torch.Tensor, torch.Tensor]:
        """``seq`` and ``w * ret``: they add up to the fused score."""
        return seq, self.retriever_part(ret, state)


class GateFusion(WeightedFusion):
    """``gate``: ``seq + g(state) * ret`` with a per-user gate ``g`` in (0, 1) from the sequence state.

    ``fusion_weight`` is the gate's starting value: its bias starts at
    ``logit(fusion_weight)`` (clipped to (0.001, 0.999)) and its weights at zero.
    """

    def __init__(self, config, hidden: int) -> None:
        super().__init__(config, hidden)
        self.gate = nn.Linear(hidden, 1)
        self.initial_gate = min(max(float(config["fusion_weight"]), 1e-3), 1 - 1e-3)

    def reset_gate(self) -> None:
        """Start every user's gate at ``fusion_weight`` (the model calls this after its own initialisation)."""
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, math.log(self.initial_gate / (1 - self.initial_gate)))

    def retriever_part(self, ret, state) -> torch.Tensor:
        return torch.sigmoid(self.gate(state)) * ret  # [P, 1] gate broadcast over items


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based rank of every item in each row (1 = highest score)."""
    order = scores.argsort(dim=-1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order))
    return rank


class RankFusion(nn.Module):
    """``rank``: reciprocal-rank fusion ``1/(k + rank_seq) + 1/(k + rank_ret)``.

    Ranks have no gradient, so both scorers are trained by their own
    cross-entropy and only fused at ranking time.
    """

    uses_retriever = True
    reads_item_table = False
    reads_text = True

    def __init__(self, config, hidden: int) -> None:
        super().__init__()
        self.k = float(config["rrf_k"])

    def train_logits(self, seq, ret, state) -> list[torch.Tensor]:
        return [seq, ret]

    def rank_scores(self, seq, ret, state) -> torch.Tensor:
        return sum(self.parts(seq, ret, state))

    def parts(self, seq, ret, state) -> tuple[torch.Tensor, torch.Tensor]:
        """``1/(k + rank_seq)`` and ``1/(k + rank_ret)``."""
        return 1.0 / (self.k + ranks(seq)), 1.0 / (self.k + ranks(ret))


class CascadeFusion(WeightedFusion):
    """``cascade``: SASRec's top ``cascade_k`` reranked by ``seq + w * ret`` (the paper's setting).

    Trains the fused score and the first stage's own score, so the candidate
    generator stays a good ranker. Items outside the top ``cascade_k`` keep
    their sequence order, below every reranked item. ``parts`` are those of
    ``weighted`` (``seq`` and ``w * ret``); the ranking score is their sum
    shifted to place the reranked items first.
    """

    def __init__(self, config, hidden: int) -> None:
        super().__init__(config, hidden)
        self.k = int(config["cascade_k"])

    def train_logits(self, seq, ret, state) -> list[torch.Tensor]:
        return [self.fused(seq, ret, state), seq]

    def rank_scores(self, seq, ret, state) -> torch.Tensor:
        k = min(self.k, seq.shape[-1])
        top = seq.topk(k, dim=-1).indices  # [P, k]
        fused = self.fused(seq, ret, state).gather(-1, top)  # [P, k]
        below = seq - seq.amax(dim=-1, keepdim=True) - 1.0  # every value <= -1
        return below.scatter(-1, top, fused - fused.amin(dim=-1, keepdim=True))  # reranked values >= 0


class QueryFusion(WeightedFusion):
    """``query``: ``seq + w * ret`` where the retriever scores items with SASRec's own item table.

    ``ret = mean_k(proxy_k) . e_i``, so the fused score is
    ``(state + w * mean_k proxy_k) . e_i``: the retriever's read-out moves the
    query, and no second item representation is scored (the retriever costs
    little more than its attention over the memory). Pools proxies by their
    mean (``proxy_pooling: mean``).
    """

    reads_item_table = True


FUSIONS: dict[str, type[nn.Module]] = {
    "none": NoFusion,
    "item_text": ItemTextFusion,
    "weighted": WeightedFusion,
    "gate": GateFusion,
    "rank": RankFusion,
    "cascade": CascadeFusion,
    "query": QueryFusion,
}
