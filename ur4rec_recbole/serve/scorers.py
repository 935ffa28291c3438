"""How a loaded model scores a batch of requests: UR4Rec with its parts and reasons, any sequential model plainly.

A request reaches the model as the last ``MAX_ITEM_LIST_LENGTH`` items of its
history (left-aligned, zero-padded, as RecBole's rows) and, for UR4Rec, a
preference vector with its validity (False masks the slot). The scorer is
chosen by what the model can do, not by its name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from recbole.data.interaction import Interaction
from recbole.utils import ModelType

from ur4rec_recbole.errors import InputError


@dataclass
class Batch:
    """A batch of requests as the model reads them."""

    item_seq: torch.Tensor  # [B, L] last L history items, zero-padded on the right
    item_seq_len: torch.Tensor  # [B]
    users: torch.Tensor  # [B] internal user ids, 0 for users the model never saw
    user_text: torch.Tensor | None  # [B, D] preference vectors (UR4Rec)
    user_valid: torch.Tensor | None  # [B] False masks the preference slot

    def take(self, rows: torch.Tensor) -> "Batch":
        """The requests at ``rows`` ``[R]`` (repeats allowed)."""
        return Batch(*(None if value is None else value[rows] for value in vars(self).values()))


@dataclass
class Scores:
    score: torch.Tensor  # [B, N] what items are ranked by
    sequence: torch.Tensor  # [B, N] the sequence scorer's part
    retriever: torch.Tensor | None  # [B, N] the retriever's part; None for models without a retriever


class SequenceScorer:
    """Any RecBole sequential model (SASRec, GRU4Rec, ...): its ``full_sort_predict``, no parts, no reasons."""

    uses_profiles = False
    explains = False

    def __init__(self, model) -> None:
        self.model = model

    @torch.no_grad()
    def scores(self, batch: Batch) -> Scores:
        model = self.model
        rows = Interaction({model.ITEM_SEQ: batch.item_seq, model.ITEM_SEQ_LEN: batch.item_seq_len,
                            model.USER_ID: batch.users})
        score = model.full_sort_predict(rows).view(len(batch.users), -1)  # [B, N]
        return Scores(score, score, None)


class RetrieverScorer(SequenceScorer):
    """UR4Rec: sequence and retriever parts, explanations; item views and table computed once (weights only)."""

    uses_profiles = True

    def __init__(self, model) -> None:
        super().__init__(model)
        self.explains = model.fusion.uses_retriever  # with fusion "none" the retriever plays no part in a ranking
        with torch.no_grad():
            self.views, self.table = model.item_views(), model.item_table()

    @torch.no_grad()
    def scores(self, batch: Batch) -> Scores:
        parts = self.model.score_parts(batch.item_seq, batch.item_seq_len, batch.user_text, batch.user_valid,
                                       self.views, table=self.table)
        return Scores(parts.score, parts.sequence, parts.retriever)

    @torch.no_grad()
    def reasons(self, batch: Batch, items: torch.Tensor, removed: torch.Tensor | None = None):
        """``UR4Rec.explain`` for ``items`` ``[B, k]`` (``removed`` ``[B, L]`` takes history items out of the memory)."""
        return self.model.explain(batch.item_seq, batch.item_seq_len, batch.user_text, batch.user_valid, items,
                                  self.views, removed, table=self.table)


def scorer_for(model, config) -> SequenceScorer:
    """The scorer a model supports: with parts and reasons when it has a retriever (``score_parts``)."""
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        raise InputError(f"recommend serves sequential models (UR4Rec, SASRec, GRU4Rec, ...); "
                         f"{config['model']} is a {config['MODEL_TYPE'].name.lower()} model")
    return RetrieverScorer(model) if hasattr(model, "score_parts") else SequenceScorer(model)
