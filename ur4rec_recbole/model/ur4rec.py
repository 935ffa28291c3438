"""UR4Rec: a SASRec backbone plus a preference retriever over offline texts.

Reuses RecBole's SASRec pieces (embeddings, ``trm_encoder``,
``get_attention_mask``, ``gather_indexes``). The score of item ``i`` for a
user is a fusion (``fusion`` in the config) of

- the sequence score ``h_t . e_i`` (SASRec), and
- the retriever score ``max_k cos(proxy_k, item_i) / temperature``.

Loss: cross-entropy over the catalogue on the fused score(s) plus
``retriever_weight`` x InfoNCE of the retriever against the target item
(over the whole catalogue). With ``retriever_weight: 0`` and
``fusion: none`` the model trains and scores exactly as SASRec.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.sasrec import SASRec

from ur4rec_recbole.data.dataset import TRAIN_FROM
from ur4rec_recbole.model.fusion import FUSIONS
from ur4rec_recbole.model.retriever import PreferenceRetriever

PARAMETER_GROUPS = ("backbone", "retriever", "fusion")


class UR4Rec(SASRec):
    """SASRec + preference retriever + learned fusion (see module docstring)."""

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)  # SASRec's layers, initialised as SASRec does
        if self.loss_type != "CE":
            raise ValueError(f"UR4Rec trains with loss_type CE, got {self.loss_type!r}")
        features = dataset.features
        self.USER_ID = config["USER_ID_FIELD"]
        self.register_buffer("item_text", features.item_text)  # [N, D]
        self.register_buffer("item_text_mask", features.item_text_mask)  # [N]
        self.register_buffer("user_text", features.user_text)  # [U, D]
        self.register_buffer("user_text_mask", features.user_text_mask)  # [U]
        self.all_positions = config["train_all_positions"]

        self.retriever = PreferenceRetriever(
            text_dim=features.item_text.shape[1], hidden=self.hidden_size,
            n_proxies=config["n_proxies"], n_heads=config["retriever_heads"],
            dropout=config["retriever_dropout"], temperature=config["retriever_temperature"],
            layer_norm_eps=self.layer_norm_eps,
        )
        stages = config["stages"] or []
        fusion_names = {"none", config["fusion"]} | {s["fusion"] for s in stages if "fusion" in s}
        unknown = fusion_names - set(FUSIONS)
        if unknown:
            raise ValueError(f"fusion {sorted(unknown)} unknown; choose from {sorted(FUSIONS)}")
        self.fusions = torch.nn.ModuleDict({n: FUSIONS[n](config, self.hidden_size) for n in sorted(fusion_names)})
        self.retriever.apply(self._init_weights)
        self.fusions.apply(self._init_weights)
        torch.nn.init.normal_(self.retriever.proxies, std=self.initializer_range)

        # what a stage may change; saved in checkpoints through other_parameter()
        self.other_parameter_name = ["fusion_name", "retriever_weight"]
        self.configured = {"fusion": config["fusion"], "retriever_weight": float(config["retriever_weight"])}
        self.fusion_name: str = self.configured["fusion"]
        self.retriever_weight: float = self.configured["retriever_weight"]

    # -- stages -------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Trainable parameters by group, for staged training."""
        groups = {"retriever": list(self.retriever.parameters()), "fusion": list(self.fusions.parameters())}
        taken = {id(p) for ps in groups.values() for p in ps}
        groups["backbone"] = [p for p in self.parameters() if id(p) not in taken]
        return groups

    def enter_stage(self, stage: Mapping) -> None:
        """Freeze all groups not listed in ``stage['train']`` and apply its loss settings.

        Settings a stage leaves out take their configured values, not the previous stage's.
        """
        train = set(stage.get("train", ["all"]))
        unknown = train - set(PARAMETER_GROUPS) - {"all"}
        if unknown:
            raise ValueError(f"stage {stage.get('name')!r} trains unknown groups {sorted(unknown)}; "
                             f"choose from {PARAMETER_GROUPS} or 'all'")
        for name, params in self.parameter_groups().items():
            for p in params:
                p.requires_grad_("all" in train or name in train)
        self.fusion_name = stage.get("fusion", self.configured["fusion"])
        self.retriever_weight = float(stage.get("retriever_weight", self.configured["retriever_weight"]))

    @property
    def fusion(self):
        return self.fusions[self.fusion_name]

    # -- scoring ------------------------------------------------------------
    def sequence_states(self, item_seq: torch.Tensor) -> torch.Tensor:
        """SASRec's encoder output at every position. ``[B, L, H]``"""
        position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
        hidden = self.item_embedding(item_seq) + self.position_embedding(position_ids)[None]  # [B, L, H]
        hidden = self.dropout(self.LayerNorm(hidden))
        mask = self.get_attention_mask(item_seq)  # causal + padding
        return self.trm_encoder(hidden, mask, output_all_encoded_layers=True)[-1]  # [B, L, H]

    def _needs_retriever(self) -> bool:
        return self.fusion.uses_retriever or (self.training and self.retriever_weight > 0)

    def _proxies(self, interaction, item_seq, item_seq_len, positions) -> tuple[torch.Tensor, torch.Tensor]:
        """Proxy states ``[B, T, K, H]`` at ``positions`` and all item representations ``[N, H]``."""
        items = self.retriever.item_representations(self.item_text, self.item_text_mask, self.item_embedding.weight)
        user = interaction[self.USER_ID]  # [B]
        user_vec = self.retriever.user_adapter(self.user_text[user])  # [B, H]
        proxies = self.retriever.proxy_states(
            user_vec, self.user_text_mask[user], items[item_seq], item_seq_len, positions
        )
        return proxies, items

    def full_sort_predict(self, interaction) -> torch.Tensor:
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        state = self.gather_indexes(self.sequence_states(item_seq), item_seq_len - 1)  # [B, H]
        seq_scores = state @ self.item_embedding.weight.T  # [B, N]
        ret_scores = None
        if self.fusion.uses_retriever:
            proxies, items = self._proxies(interaction, item_seq, item_seq_len, (item_seq_len - 1)[:, None])
            ret_scores = self.retriever.score(proxies[:, 0], items)  # [B, N]
        return self.fusion.rank_scores(seq_scores, ret_scores, state)

    def predict(self, interaction) -> torch.Tensor:
        # rank-based fusions need the whole catalogue, so score it and pick the asked items
        scores = self.full_sort_predict(interaction)  # [B, N]
        return scores.gather(1, interaction[self.ITEM_ID][:, None]).squeeze(1)

    # -- training -----------------------------------------------------------
    def calculate_loss(self, interaction) -> torch.Tensor:
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]  # [B]
        states = self.sequence_states(item_seq)  # [B, L, H]
        if self.all_positions:
            # the target at position t is the item at t+1; the row's target follows its last item
            shifted = torch.cat([item_seq[:, 1:], torch.zeros_like(item_seq[:, :1])], dim=1)  # [B, L]
            shifted = shifted.scatter(1, (item_seq_len - 1)[:, None], target[:, None])
            start = interaction[TRAIN_FROM]  # [B] first position with a loss
            span = int((item_seq_len - start).max())  # T: most loss positions in a row
            positions = start[:, None] + torch.arange(span, device=item_seq.device)  # [B, T]
            valid = positions < item_seq_len[:, None]  # [B, T]
            positions = positions.clamp(max=item_seq.shape[1] - 1)
            targets = shifted.gather(1, positions)  # [B, T]
        else:  # RecBole's prefix rows: only the last position has a target
            positions = (item_seq_len - 1)[:, None]  # [B, 1]
            targets, valid = target[:, None], torch.ones_like(positions, dtype=torch.bool)
        state = states.gather(1, positions[..., None].expand(-1, -1, states.shape[-1]))[valid]  # [P, H]
        targets = targets[valid]  # [P]
        seq_logits = state @ self.item_embedding.weight.T  # [P, N]

        ret_logits = None
        if self._needs_retriever():
            proxies, items = self._proxies(interaction, item_seq, item_seq_len, positions)  # [B, T, K, H]
            ret_logits = self.retriever.score(proxies[valid], items)  # [P, N]
        loss = sum(F.cross_entropy(logits, targets) for logits in self.fusion.train_logits(seq_logits, ret_logits, state))
        if self.retriever_weight > 0:
            loss = loss + self.retriever_weight * F.cross_entropy(ret_logits, targets)
        return loss
