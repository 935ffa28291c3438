"""Non-learned baselines, the floors a learned model must beat: transitions, text k-NN and their sum.

Each is fitted when it is built, from what RecBole's split lets a model see:
the training portions (``dataset.training_histories``, from the one place the
leakage rule lives, ``SplitDataset.split_with_portions``) and the item
knowledge vectors UR4Rec reads (``dataset.features.item_text``). They run
through the same Config, split, evaluator and checkpoints as every model;
``NonLearnedTrainer`` gives them one epoch that reads no training batch.

For a user whose input sequence (RecBole's ``item_id_list``) ends ``..., s_{n-2}, s_{n-1}, s_n``:

- ``Transitions``: ``c(s_n -> j) / max_j' c(s_n -> j')``, where ``c(i -> j)``
  counts ``j`` right after ``i`` in the training portions (0 for every ``j``
  when ``s_n`` has no training successor);
- ``TextKNN``: the mean over the last ``text_window`` items ``s`` of
  ``cos(k_s, k_j)`` (``k``: knowledge vectors; an item without one has cosine 0);
- ``TransitionsTextKNN``: ``Transitions + text_weight x TextKNN``;
- ``ImageKNN``: ``TextKNN`` on the item image vectors (``modalities: image``), the floor that
  says how much an item's picture alone tells about the next item.

With ``exclude_history`` the items of the input sequence score ``-inf``.
Ties (e.g. the many candidates with no transition) are left to RecBole's top-k.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from ur4rec_recbole.config.settings import require, require_number
from ur4rec_recbole.data.repeats import decide_masks


def transition_table(portions: dict[int, np.ndarray], n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order transition counts of the training portions: ``(pairs [2, P] (from, to), counts [P])``."""
    sources = np.concatenate([p[:-1] for p in portions.values()] + [np.zeros(0, dtype=np.int64)])
    targets = np.concatenate([p[1:] for p in portions.values()] + [np.zeros(0, dtype=np.int64)])
    keys, counts = np.unique(sources.astype(np.int64) * n_items + targets, return_counts=True)
    pairs = np.stack([keys // n_items, keys % n_items])
    return torch.from_numpy(pairs), torch.from_numpy(counts.astype(np.float32))


class NonLearned(SequentialRecommender):
    """Base of the baselines: a fixed ``scores(item_seq, item_seq_len)`` for every item. ``[B, N]``"""

    input_type = InputType.POINTWISE  # as RecBole's Pop: no negative sampling (no training batch is read)
    honours_masks = True  # exclude_history applied below; nothing is trained (run/protocol.py)

    @classmethod
    def check_settings(cls, config) -> None:
        """Reject bad settings before any data is loaded (the Config calls this; the history masks are
        checked for every model, ``config/settings.py``)."""

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.exclude_history = decide_masks(config, dataset)["exclude_history"]  # auto: from the training portions

    def full_sort_predict(self, interaction) -> torch.Tensor:
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        scores = self.scores(item_seq, item_seq_len)  # [B, N]
        if self.exclude_history:  # padding is item 0, which the evaluator masks anyway
            scores = scores.scatter(1, item_seq, float("-inf"))
        return scores

    def predict(self, interaction) -> torch.Tensor:
        scores = self.full_sort_predict(interaction)  # [B, N]
        return scores.gather(1, interaction[self.ITEM_ID][:, None]).squeeze(1)

    def calculate_loss(self, interaction):
        raise RuntimeError(f"{type(self).__name__} has nothing to train: it is fitted when built and runs "
                           "through NonLearnedTrainer (registry.get_trainer)")


class Transitions(NonLearned):
    """First-order item transitions of the training portions, normalised per user (see module docstring)."""

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        pairs, counts = transition_table(dataset.training_histories, self.n_items)
        self.register_buffer("transition_pairs", pairs)  # [2, P] (from, to) item ids
        self.register_buffer("transition_counts", counts)  # [P]

    def transition_counts_from_last(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """``c(last -> j)`` for every item ``j``. ``[B, N]``"""
        last = item_seq.gather(1, (item_seq_len - 1)[:, None]).squeeze(1)  # [B]
        table = torch.sparse_coo_tensor(self.transition_pairs, self.transition_counts, (self.n_items, self.n_items),
                                        is_coalesced=True, check_invariants=False)  # sorted unique pairs
        return table.index_select(0, last).to_dense()  # [B, N]

    def transition_scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """``c(last -> j)`` divided by the largest count of the row. ``[B, N]``"""
        rows = self.transition_counts_from_last(item_seq, item_seq_len)  # [B, N]
        return rows / rows.max(dim=1, keepdim=True).values.clamp(min=1.0)

    def scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.transition_scores(item_seq, item_seq_len)


class TextKNN(NonLearned):
    """Mean cosine of each item's knowledge vector to those of the last ``text_window`` history items."""

    @classmethod
    def check_settings(cls, config) -> None:
        super().check_settings(config)
        require_number(config, "text_window", 1, integer=True)

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.text_window = config["text_window"]
        self.register_buffer("item_text", F.normalize(self.item_vectors(dataset), dim=1))  # [N, D] unit (or zero)

    @staticmethod
    def item_vectors(dataset) -> torch.Tensor:
        """The item vectors whose cosines score (the knowledge vectors). ``[N, D]``"""
        return dataset.features.item_text

    def text_scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """Mean cosine to the last ``text_window`` items (fewer when the history is shorter). ``[B, N]``"""
        back = torch.arange(self.text_window, device=item_seq.device)  # [W]
        positions = item_seq_len[:, None] - 1 - back  # [B, W]
        present = (positions >= 0).float()  # [B, W]
        recent = self.item_text[item_seq.gather(1, positions.clamp(min=0))]  # [B, W, D]
        query = (recent * present[..., None]).sum(1) / present.sum(1, keepdim=True)  # [B, D]
        return query @ self.item_text.T  # [B, N]

    def scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.text_scores(item_seq, item_seq_len)


class TransitionsTextKNN(Transitions, TextKNN):
    """``Transitions + text_weight x TextKNN`` (the issue's sum: transitions normalised per user + 0.5 x text)."""

    @classmethod
    def check_settings(cls, config) -> None:
        super().check_settings(config)
        require_number(config, "text_weight", 0)

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.text_weight = float(config["text_weight"])

    def scores(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.transition_scores(item_seq, item_seq_len) + self.text_weight * self.text_scores(item_seq, item_seq_len)


class ImageKNN(TextKNN):
    """``TextKNN`` on the item image vectors; an item without an image has cosine 0 (its row is zero)."""

    @classmethod
    def check_settings(cls, config) -> None:
        super().check_settings(config)
        require(config, "modalities", "image" in (config["modalities"] or ()),
                "image or text,image (ImageKNN reads the item image vectors)")

    @staticmethod
    def item_vectors(dataset) -> torch.Tensor:
        return dataset.features.item_image * dataset.features.item_image_mask[:, None].float()  # [N, D_img]
