"""Auxiliary losses of UR4Rec, each switched on by a positive weight in the config.

``LOSS_TERMS`` maps a name to the config key of its weight, the modalities
it needs and the function computing it from a :class:`LossInputs`. Every
term is non-negative, which uncertainty weighting relies on. The main loss
(cross-entropy of the fused score) is not listed: it always has weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ur4rec_recbole.model.modality import ItemViews
from ur4rec_recbole.model.sampled_softmax import Candidates


@dataclass
class LossInputs:
    """What the auxiliary losses look at, for one training batch."""

    targets: torch.Tensor  # [P] target item of each loss position
    ret_logits: torch.Tensor  # [P, N] retriever scores
    proxies: torch.Tensor | None  # [P, K, H] proxy states at the loss positions (None under slots scoring)
    views: ItemViews  # per-modality item representations
    item_seq: torch.Tensor  # [B, L] the batch's histories (0 = padding)
    temperature: float  # of the text-image InfoNCE
    candidates: Candidates | None = None  # the items ret_logits score (None: the whole catalogue)

    @cached_property
    def batch_items(self) -> torch.Tensor:
        """Distinct items of the batch, histories and targets. ``[n]``"""
        return torch.unique(torch.cat([self.item_seq[self.item_seq > 0], self.targets]))


def retrieval_loss(x: LossInputs) -> torch.Tensor:
    """InfoNCE of the retriever against the target item over the catalogue (or the sampled candidates)."""
    if x.candidates is not None:
        return x.candidates.cross_entropy(x.ret_logits)
    return F.cross_entropy(x.ret_logits, x.targets)


def _paired(x: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit text and image representations of the batch's items that have both. ``[m, H]`` each"""
    items = x.batch_items[x.views.both()[x.batch_items]]
    return F.normalize(x.views.text[items], dim=-1), F.normalize(x.views.image[items], dim=-1)


def contrastive_loss(x: LossInputs) -> torch.Tensor:
    """Symmetric InfoNCE: an item's text should pick out its own image among the batch's, and back."""
    text, image = _paired(x)
    if len(text) < 2:  # no negatives to contrast with
        return x.ret_logits.new_zeros(())
    logits = text @ image.T / x.temperature  # [m, m]
    labels = torch.arange(len(text), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def consistency_loss(x: LossInputs) -> torch.Tensor:
    """Mean ``1 - cos`` between an item's text and image representations."""
    text, image = _paired(x)
    if not len(text):
        return x.ret_logits.new_zeros(())
    return (1 - (text * image).sum(-1)).mean()


def diversity_loss(x: LossInputs) -> torch.Tensor:
    """Mean squared cosine between different proxies of the same query: 0 when they are orthogonal."""
    unit = F.normalize(x.proxies, dim=-1)  # [P, K, H]
    gram = unit @ unit.transpose(1, 2)  # [P, K, K]
    k = gram.shape[-1]
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=gram.device)
    return gram[:, off_diagonal].pow(2).mean() if k > 1 else gram.new_zeros(())


@dataclass(frozen=True)
class LossTerm:
    weight_key: str  # config key of the fixed weight; 0 switches the term off
    needs: tuple[str, ...]  # modalities the term needs
    compute: Callable[[LossInputs], torch.Tensor]


LOSS_TERMS: dict[str, LossTerm] = {
    "retrieval": LossTerm("retriever_weight", (), retrieval_loss),
    "contrastive": LossTerm("contrastive_weight", ("text", "image"), contrastive_loss),
    "consistency": LossTerm("consistency_weight", ("text", "image"), consistency_loss),
    "diversity": LossTerm("diversity_weight", (), diversity_loss),
}


def applicable_terms(modalities: tuple[str, ...]) -> list[str]:
    """Terms whose modalities are all in use."""
    return [name for name, term in LOSS_TERMS.items() if set(term.needs) <= set(modalities)]


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018): ``sum_i exp(-s_i) / 2 * L_i + s_i / 2`` with learned log-variances ``s_i``.

    ``s_i`` are ordinary parameters, trained by RecBole's optimizer; they replace
    the fixed weights of the terms that are switched on.
    """

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.log_vars = nn.Parameter(torch.zeros(len(self.names)))  # [n_terms], s = log sigma^2

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = self.log_vars.new_zeros(())
        for name, loss in losses.items():
            s = self.log_vars[self.names.index(name)]
            total = total + 0.5 * torch.exp(-s) * loss + 0.5 * s
        return total
