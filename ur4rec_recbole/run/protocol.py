"""One evaluation protocol for every model: the history masks, decided and applied in one place.

``exclude_history`` (the items of the input sequence score ``-inf`` in every
ranking: evaluation, ``--compare``, ``--hyper``, serving) and
``train_exclude_history`` (they leave the training softmax's negatives) are
set to ``True``, ``False`` or ``auto`` (the default, ``overall.yaml``):
``auto`` is on when no user repeats an item in their training portion, off
otherwise, decided from the data and logged in one line.

This package's models (UR4Rec, the floors, UniSRec) apply both masks
themselves (``honours_masks``). Every other sequential model is wrapped when
:func:`ur4rec_recbole.run.prepare.build_model` builds it (:func:`apply_protocol`):
its ``full_sort_predict``/``predict`` mask the history, and, where its loss is
a softmax cross-entropy over the catalogue read through ``self.loss_fct``
(SASRec, GRU4Rec, SASRecF, FDSA, ...), so does its training loss. A mask set
to ``True`` that a model cannot honour (BERT4Rec's loss, a non-sequential
model) is refused in one line; ``auto`` then says off, and the record says so.
Each run's JSON holds :func:`protocol_record` as ``protocol``.
"""

from __future__ import annotations

from logging import getLogger
from typing import Any, Mapping

import torch
from torch import nn

from ur4rec_recbole.config.settings import HISTORY_MASKS as MASKS
from ur4rec_recbole.errors import InputError

EVALUATION_KEYS = ("split", "order", "group_by", "ranking", "exclude_history", "cold_items")  # same on every row


def can_honour(model) -> dict[str, str | None]:
    """For each mask, None when ``model`` can apply it, else why not."""
    if getattr(model, "honours_masks", False):
        return dict.fromkeys(MASKS)
    if not hasattr(model, "ITEM_SEQ"):
        why = f"{type(model).__name__} is not a sequential model (it reads no input sequence to mask)"
        return dict.fromkeys(MASKS, why)
    ce = getattr(model, "loss_type", None) == "CE" and isinstance(getattr(model, "loss_fct", None),
                                                                  nn.CrossEntropyLoss)
    return {"exclude_history": None,
            "train_exclude_history": None if ce else (
                f"{type(model).__name__}'s loss is not a softmax over the catalogue read through loss_fct "
                "(e.g. BERT4Rec's masked-item loss, or loss_type BPR)")}


def refuse_unhonoured(config, model, given: Mapping[str, Any]) -> None:
    """One line for a mask set to True that ``model`` cannot apply; an ``auto`` one becomes False."""
    for key, why in can_honour(model).items():
        if why is None or not config[key]:
            continue
        if given[key] == "auto":
            config[key] = False
            getLogger().info(f"{key}=auto -> False for {type(model).__name__}: {why}")
        else:
            raise InputError(f"setting {key}=True: {why}, so it cannot apply it; set {key}=False (or auto)")


class HistoryMaskedCE(nn.CrossEntropyLoss):
    """A model's softmax cross-entropy with the batch's history items (its target excepted) out of the negatives.

    ``history`` ``[B, L]`` is set by :class:`HistoryMasked` before each ``calculate_loss``.
    """

    history: torch.Tensor | None = None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # [B, N], [B]
        history = self.history
        if history is None or logits.dim() != 2 or len(logits) != len(history):
            raise RuntimeError("train_exclude_history: the loss did not score one catalogue row per input sequence")
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter(1, history, True)  # [B, N]
        seen[:, 0] = False  # padding
        seen = seen.scatter(1, target[:, None], False)  # a repeated target stays the label
        return super().forward(logits.masked_fill(seen, float("-inf")), target)


class HistoryMasked:
    """Mixin put in front of a RecBole sequential model's class: the history masks applied around its methods."""

    exclude_history = False
    train_exclude_history = False

    def full_sort_predict(self, interaction) -> torch.Tensor:
        scores = super().full_sort_predict(interaction)  # [B, N] (or flat)
        if not self.exclude_history:
            return scores
        item_seq = interaction[self.ITEM_SEQ]  # [B, L]
        return scores.view(len(item_seq), -1).scatter(1, item_seq, float("-inf")).view_as(scores)

    def predict(self, interaction) -> torch.Tensor:
        scores = super().predict(interaction)  # [B]
        if not self.exclude_history:
            return scores
        items = interaction[self.ITEM_ID]  # [B]
        in_history = (interaction[self.ITEM_SEQ] == items[:, None]).any(dim=1) & (items > 0)  # [B]
        return scores.masked_fill(in_history, float("-inf"))

    def calculate_loss(self, interaction) -> torch.Tensor:
        if self.train_exclude_history:
            self.loss_fct.history = interaction[self.ITEM_SEQ]
        return super().calculate_loss(interaction)


_masked_classes: dict[type, type] = {}


def masked_class(cls: type) -> type:
    """``cls`` with :class:`HistoryMasked` in front (same name, so logs and checkpoints read as before)."""
    if cls not in _masked_classes:
        _masked_classes[cls] = type(cls.__name__, (HistoryMasked, cls), {"__module__": cls.__module__})
    return _masked_classes[cls]


def apply_protocol(model: nn.Module, config, given: Mapping[str, Any]) -> nn.Module:
    """Refuse what ``model`` cannot honour, wrap a RecBole model with the masks, attach the protocol record."""
    refuse_unhonoured(config, model, given)
    if not getattr(model, "honours_masks", False) and hasattr(model, "ITEM_SEQ"):
        model.__class__ = masked_class(type(model))
        model.exclude_history = bool(config["exclude_history"])
        model.train_exclude_history = bool(config["train_exclude_history"])
        if model.train_exclude_history:
            model.loss_fct = HistoryMaskedCE()
    model.protocol = protocol_record(config, given)
    return model


def protocol_record(config, given: Mapping[str, Any]) -> dict:
    """What a run's JSON says about the split, the ranking and the masks actually applied."""
    eval_args = dict(config["eval_args"] or {})
    return {
        "split": eval_args.get("split"),
        "order": eval_args.get("order"),
        "group_by": eval_args.get("group_by"),
        "ranking": eval_args.get("mode"),
        "exclude_history": bool(config["exclude_history"]),
        "train_exclude_history": bool(config["train_exclude_history"]),
        "masks_set_as": {key: given[key] for key in MASKS},  # True / False / auto
        "cold_items": config["cold_items"],
    }


def same_evaluation(records: list[Mapping]) -> bool:
    """True when every record's ``protocol`` ranks under the same split, ranking and evaluation mask."""
    seen = {tuple(repr((r.get("protocol") or {}).get(k)) for k in EVALUATION_KEYS) for r in records}
    return len(seen) <= 1
