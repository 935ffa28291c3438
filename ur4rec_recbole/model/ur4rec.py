"""UR4Rec: a SASRec backbone plus a preference retriever over offline texts.

Reuses RecBole's SASRec pieces (embeddings, ``trm_encoder``,
``get_attention_mask``, ``gather_indexes``). The score of item ``i`` for a
user is a fusion (``fusion`` in the config) of

- the sequence score ``h_t . e_i`` (SASRec), and
- the retriever score ``max_k cos(proxy_k, item_i) / temperature``.

Loss: cross-entropy over the catalogue on the fused score(s) plus the
auxiliary terms of ``losses.LOSS_TERMS`` switched on in the config
(``retriever_weight`` x InfoNCE of the retriever against the target item;
with images also text-image InfoNCE and modality consistency; proxy
diversity), by fixed weights or learned uncertainty. With
``retriever_weight: 0`` and ``fusion: none`` the model trains and scores
exactly as SASRec. ``modalities`` picks the item modalities the retriever
sees (``modality.py``); ``text`` is the text model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.sasrec import SASRec

from ur4rec_recbole.data.dataset import TRAIN_FROM
from ur4rec_recbole.config.settings import require, require_choice, require_number
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.model.fusion import FUSIONS
from ur4rec_recbole.model.losses import LOSS_TERMS, LossInputs, UncertaintyWeighting, applicable_terms
from ur4rec_recbole.model.modality import MODALITY_FUSIONS, ImageAdapter, ItemViews
from ur4rec_recbole.model.retriever import PreferenceRetriever
from ur4rec_recbole.model.sampled_softmax import NEGATIVE_SAMPLERS, training_item_counts
from ur4rec_recbole.training.stages import parse_stages

PARAMETER_GROUPS = ("backbone", "retriever", "fusion", "losses")


class ScoreParts(NamedTuple):
    """Scores of the catalogue ``[B, N]``: the ranking score and the two parts the fusion made it from."""

    score: torch.Tensor  # [B, N] what items are ranked by
    sequence: torch.Tensor | None  # [B, N] the sequence scorer's part (None when not asked for)
    retriever: torch.Tensor | None  # [B, N] the retriever's part (0 when the fusion does not use it)


class RetrieverReasons(NamedTuple):
    """What :meth:`UR4Rec.explain` returns (``M`` memory slots, ``K`` proxies, ``k`` items)."""

    attention: torch.Tensor  # [B, K, M] each proxy's attention over the slots, heads averaged; rows sum to 1
    item_attention: torch.Tensor  # [B, k, M] the attention behind each item's score (its matched proxy's)
    valid: torch.Tensor  # [B, M] slots in the memory (masked ones have attention 0)
    slot_position: torch.Tensor  # [M] history position of each slot, -1 for the preference slot
    slot_kinds: list[str]  # [M] "preference", "text" or "image"
    proxy: torch.Tensor  # [B, k] the proxy whose match is each item's retriever score
    proxy_scores: torch.Tensor  # [B, K, k] every proxy's retriever score of each item


class UR4Rec(SASRec):
    """SASRec + preference retriever + learned fusion (see module docstring)."""

    @classmethod
    def check_settings(cls, config) -> None:
        """Reject bad UR4Rec settings before any data is loaded; parse ``stages`` once (Config calls this)."""
        require_choice(config, "loss_type", ("CE",))
        require_number(config, "n_proxies", 1, integer=True)
        require_number(config, "retriever_heads", 1, integer=True)
        require(config, "retriever_heads", config["hidden_size"] % config["retriever_heads"] == 0,
                f"a divisor of hidden_size={config['hidden_size']}")
        require_number(config, "retriever_temperature", 0, strict_low=True)
        require_number(config, "retriever_dropout", 0, 1)
        for term in LOSS_TERMS.values():
            require_number(config, term.weight_key, 0)
        require_number(config, "contrastive_temperature", 0, strict_low=True)
        require_choice(config, "fusion", FUSIONS)
        require_choice(config, "modality_fusion", MODALITY_FUSIONS)
        require_number(config, "fusion_weight", 0)
        require_number(config, "cascade_k", 1, integer=True)
        require_number(config, "train_batch_size", 1, integer=True)
        require_choice(config, "train_negatives", NEGATIVE_SAMPLERS)
        require_number(config, "train_negatives_count", 1, integer=True)
        stride = config["train_stride"]
        require(config, "train_stride", stride is None or (isinstance(stride, int) and stride >= 1),
                "a positive int or None")
        for key in ("history_window", "profile_top_k", "encoder_batch_size", "image_batch_size"):
            require_number(config, key, 1, integer=True)
        require(config, "text_source", isinstance(config["text_source"], str) and config["text_source"].strip(),
                "a name: template, or the source of generated texts")
        require(config, "text_field_labels", isinstance(config["text_field_labels"], dict), "a dict, e.g. {class: genres}")
        for key in ("item_vector_file", "user_vector_file"):  # inputs (image_vector_file may be an output)
            if config[key] is not None and not Path(str(config[key])).is_file():
                raise InputError(f"setting {key}={config[key]}: the vector file does not exist; check the path")
        stages = parse_stages(config["stages"], PARAMETER_GROUPS)
        for i, stage in enumerate(stages or []):
            if stage.get("fusion", config["fusion"]) not in FUSIONS:
                raise InputError(f"setting stages[{i}].fusion={stage['fusion']!r}: expected one of {sorted(FUSIONS)}")
        config["stages"] = stages
        if stages:
            config["epochs"] = sum(stage["epochs"] for stage in stages)

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)  # SASRec's layers, initialised as SASRec does
        features = dataset.features
        self.USER_ID = config["USER_ID_FIELD"]
        self.register_buffer("item_text", features.item_text)  # [N, D]
        self.register_buffer("item_text_mask", features.item_text_mask)  # [N]
        self.register_buffer("user_text", features.user_text)  # [U, D]
        self.register_buffer("user_text_mask", features.user_text_mask)  # [U]
        self.all_positions = config["train_all_positions"]
        self.negatives = NEGATIVE_SAMPLERS[config["train_negatives"]](
            self.n_items, config["train_negatives_count"], training_item_counts(dataset, self.n_items))

        self.retriever = PreferenceRetriever(
            text_dim=features.item_text.shape[1], hidden=self.hidden_size,
            n_proxies=config["n_proxies"], n_heads=config["retriever_heads"],
            dropout=config["retriever_dropout"], temperature=config["retriever_temperature"],
            layer_norm_eps=self.layer_norm_eps,
        )
        stages = config["stages"] or []  # parsed by check_settings
        fusion_names = {"none", config["fusion"]} | {s["fusion"] for s in stages if "fusion" in s}
        self.fusions = torch.nn.ModuleDict({n: FUSIONS[n](config, self.hidden_size) for n in sorted(fusion_names)})
        self.retriever.apply(self._init_weights)
        self.fusions.apply(self._init_weights)
        for fusion in self.fusions.values():
            if hasattr(fusion, "reset_gate"):
                fusion.reset_gate()
        torch.nn.init.normal_(self.retriever.proxies, std=self.initializer_range)
        self._init_images(config, features)  # after the text model's layers, so its initialisation is unchanged
        self.loss_terms = applicable_terms(self.modalities)
        self.contrastive_temperature = float(config["contrastive_temperature"])
        self.uncertainty = UncertaintyWeighting(self.loss_terms) if config["uncertainty_weighting"] else None

        # the loss settings in force (a stage may change them); saved in checkpoints through other_parameter()
        self.other_parameter_name = ["fusion_name", "term_weights"]
        self._configured = (config["fusion"], {n: float(config[LOSS_TERMS[n].weight_key]) for n in self.loss_terms})
        self.fusion_name: str = self._configured[0]
        self.term_weights: dict[str, float] = dict(self._configured[1])  # auxiliary loss -> weight

    def _init_images(self, config, features) -> None:
        """Image adapter and modality fusion, when ``modalities`` includes ``image``."""
        self.modalities = config["modalities"]  # a tuple, parsed by the Config
        self.image_modules = torch.nn.ModuleDict()
        if "image" not in self.modalities:
            return
        if features.item_image is None:
            raise ValueError("modalities include 'image' but the dataset has no item image vectors")
        self.register_buffer("item_image", features.item_image)  # [N, D_img]
        self.register_buffer("item_image_mask", features.item_image_mask)  # [N]
        self.image_modules["adapter"] = ImageAdapter(features.item_image.shape[1], self.hidden_size)
        if len(self.modalities) > 1:
            self.image_modules["fusion"] = MODALITY_FUSIONS[config["modality_fusion"]](self.hidden_size)
        self.image_modules.apply(self._init_weights)

    # -- stages -------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        """Trainable parameters by group, for staged training."""
        groups = {"retriever": [*self.retriever.parameters(), *self.image_modules.parameters()],
                  "fusion": list(self.fusions.parameters()),
                  "losses": list(self.uncertainty.parameters()) if self.uncertainty is not None else []}
        taken = {id(p) for ps in groups.values() for p in ps}
        groups["backbone"] = [p for p in self.parameters() if id(p) not in taken]
        return groups

    def enter_stage(self, stage: Mapping) -> None:
        """Freeze all groups not listed in ``stage['train']`` and apply its loss settings.

        Settings a stage leaves out take their configured values, not the previous stage's.
        """
        train = set(stage["train"])
        for name, params in self.parameter_groups().items():
            for p in params:
                p.requires_grad_("all" in train or name in train)
        fusion, weights = self._configured
        self.fusion_name = stage.get("fusion", fusion)
        self.term_weights = {**weights, **({"retrieval": float(stage["retriever_weight"])}
                                            if "retriever_weight" in stage and "retrieval" in weights else {})}

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

    def active_terms(self) -> dict[str, float]:
        """Auxiliary losses switched on now, with their weights (a stage may change the retrieval one)."""
        return {name: w for name, w in self.term_weights.items() if w > 0}

    def item_views(self, items: torch.Tensor | None = None) -> ItemViews:
        """Each modality's representation of the item ids ``items`` (every item when None). ``[n, H]``"""
        pick = (lambda table: table) if items is None else (lambda table: table[items])
        ids = self.item_embedding.weight if items is None else self.item_embedding(items)
        text = text_mask = image = image_mask = None
        if "text" in self.modalities:
            text_mask = pick(self.item_text_mask)
            text = self.retriever.item_representations(pick(self.item_text), text_mask, ids)
        if "image" in self.modalities:
            image, image_mask = self.image_modules["adapter"](pick(self.item_image)), pick(self.item_image_mask)
        single = text  # one modality: its representation; two: None (the modality fusion scores)
        if image is not None and text is not None:
            single = None
        elif image is not None:  # image alone falls back to the ID representation, as text does
            single = torch.where(image_mask[:, None], image, self.retriever.id_adapter(ids))
        return ItemViews(text, text_mask, image, image_mask, single)

    def memory_of(self, user_text: torch.Tensor, user_valid: torch.Tensor, item_seq: torch.Tensor,
                  item_seq_len: torch.Tensor, views: ItemViews, removed: torch.Tensor | None = None):
        """The retriever's memory for users given by their preference vectors.

        user_text ``[B, D]``, user_valid ``[B]`` (False masks the preference
        slot), item_seq ``[B, L]``: rows of ``views`` (item ids when the views
        cover the catalogue); ``removed`` ``[B, L]`` (optional) takes those
        history items out of the memory. Returns memory ``[B, M, H]``, valid
        ``[B, M]``, slot_position ``[M]`` (``PreferenceRetriever.memory``) and
        each slot's kind (``preference``, ``text``, ``image``).
        """
        in_history = torch.arange(item_seq.shape[1], device=item_seq.device) < item_seq_len[:, None]  # [B, L]
        if removed is not None:
            in_history = in_history & ~removed
        if views.single is not None:
            blocks = [(views.single[item_seq], in_history)]
            kinds = ["text" if views.text is not None else "image"]
        else:  # text slots, then image slots; items without an image are masked out of the memory
            has_image = in_history & views.image_mask[item_seq]  # [B, L]
            blocks = [(views.text[item_seq], in_history), (views.image[item_seq], has_image)]
            kinds = ["text", "image"]
        user_vec = self.retriever.user_adapter(user_text)  # [B, H]
        memory = self.retriever.memory(user_vec, user_valid, blocks)
        slot_kinds = ["preference"] + [kind for kind in kinds for _ in range(item_seq.shape[1])]
        return memory, slot_kinds

    def _proxies(self, interaction, item_seq, item_seq_len, positions, items: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, ItemViews, torch.Tensor | None]:
        """Proxy states ``[B, T, K, H]`` at ``positions``, the item views, and the rows of ``items`` in them.

        ``items`` None: the views hold the whole catalogue (rows None = all). With one modality and
        sampled candidates, only the histories' and the candidates' items are represented, so a
        training step does no O(N) work.
        """
        if items is not None and len(self.modalities) == 1:
            needed, inverse = torch.unique(torch.cat([item_seq.flatten(), items]), return_inverse=True)
            views = self.item_views(needed)  # [n, H]
            seq_rows, item_rows = inverse[: item_seq.numel()].view_as(item_seq), inverse[item_seq.numel():]
        else:  # (the image losses index the views by item id)
            views, seq_rows, item_rows = self.item_views(), item_seq, items
        user = interaction[self.USER_ID]  # [B]
        memory, _ = self.memory_of(self.user_text[user], self.user_text_mask[user], seq_rows, item_seq_len, views)
        return self.retriever.proxy_states(*memory, positions), views, item_rows

    def retriever_proxy_scores(self, proxies: torch.Tensor, views: ItemViews) -> torch.Tensor:
        """Each proxy's retriever score of every item ``[P, K, N]``; the score is the max over proxies."""
        if views.single is not None:
            sims = self.retriever.proxy_similarities(proxies, views.single)
        else:
            sims = self.image_modules["fusion"].proxy_scores(proxies, views.text, views.image, views.image_mask)
        return sims / self.retriever.temperature

    def retriever_scores(self, proxies: torch.Tensor, views: ItemViews, rows: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """Retriever score of the view rows ``rows`` (all when None) for each query's proxies ``[P, K, H]``. ``[P, C]``"""
        pick = (lambda table: table) if rows is None else (lambda table: table[rows])
        if views.single is not None:
            return self.retriever.score(proxies, pick(views.single))
        fused = self.image_modules["fusion"].score(proxies, pick(views.text), pick(views.image),
                                                   pick(views.image_mask))
        return fused / self.retriever.temperature

    # -- serving --------------------------------------------------------------
    def score_parts(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, user_text: torch.Tensor,
                    user_valid: torch.Tensor, views: ItemViews | None = None,
                    removed: torch.Tensor | None = None, parts: bool = True) -> ScoreParts:
        """Scores of the whole catalogue after each history, with each scorer's part.

        Users are given by their preference vectors ``user_text`` ``[B, D]``
        (``user_valid`` ``[B]`` False masks the slot), so a user the model never
        saw is scored from a vector computed at request time. ``views`` may
        be cached by the caller (they depend on the weights only);
        ``removed`` takes history items out of the retriever's memory;
        ``parts=False`` returns the ranking score alone (evaluation).
        """
        state = self.gather_indexes(self.sequence_states(item_seq), item_seq_len - 1)  # [B, H]
        seq_scores = state @ self.item_embedding.weight.T  # [B, N]
        ret_scores = proxies = None
        if self.fusion.uses_retriever:
            views = self.item_views() if views is None else views
            memory, _ = self.memory_of(user_text, user_valid, item_seq, item_seq_len, views, removed)
            proxies = self.retriever.proxy_states(*memory, (item_seq_len - 1)[:, None])[:, 0]  # [B, K, H]
            ret_scores = self.retriever_scores(proxies, views)  # [B, N]
        score = self.fusion.rank_scores(seq_scores, ret_scores, state)
        if not parts:
            return ScoreParts(score, None, None)
        return ScoreParts(score, *self.fusion.parts(seq_scores, ret_scores, state))

    def explain(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, user_text: torch.Tensor,
                user_valid: torch.Tensor, items: torch.Tensor, views: ItemViews | None = None,
                removed: torch.Tensor | None = None) -> RetrieverReasons:
        """What the retriever read to score ``items`` ``[B, k]`` after each history (the model in eval mode).

        Each proxy's attention over the memory slots at the last position,
        averaged over heads (a probability distribution over the slots it
        sees), and for each item the proxy whose match gives its retriever
        score (the max over ``proxy_scores``) with that proxy's attention
        (``item_attention``, what explanations name; a retriever that pooled
        proxies smoothly would mix their attention here). Explanations are
        built from this alone, so they follow the retriever. ``removed``
        ``[B, L]`` takes history items out of the memory first (slot effects).
        """
        views = self.item_views() if views is None else views
        memory, kinds = self.memory_of(user_text, user_valid, item_seq, item_seq_len, views, removed)
        proxies, attention = self.retriever.proxy_states(*memory, (item_seq_len - 1)[:, None], return_attention=True)
        wanted, where = items.unique(return_inverse=True)  # [U], [B, k]: score only the items asked about
        per_proxy = self.retriever_proxy_scores(proxies[:, 0], views.take(wanted))  # [B, K, U]
        per_proxy = per_proxy.gather(2, where[:, None, :].expand(-1, per_proxy.shape[1], -1))  # [B, K, k]
        attention, proxy = attention[:, 0], per_proxy.argmax(dim=1)  # [B, K, M], [B, k]
        item_attention = attention.gather(1, proxy[:, :, None].expand(-1, -1, attention.shape[-1]))  # [B, k, M]
        return RetrieverReasons(attention, item_attention, memory[1], memory[2], kinds, proxy, per_proxy)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        user = interaction[self.USER_ID]  # [B]
        return self.score_parts(item_seq, item_seq_len, self.user_text[user], self.user_text_mask[user],
                                parts=False).score

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
        candidates = self.negatives.candidates(targets)  # the catalogue, or a sample (train_negatives)
        items = None if candidates.whole else candidates.items  # [C]
        embeddings = self.item_embedding.weight if items is None else self.item_embedding(items)  # [C, H]
        seq_logits = state @ embeddings.T  # [P, C]

        ret_logits = None
        terms = self.active_terms()
        if self.fusion.uses_retriever or terms:
            proxies, views, rows = self._proxies(interaction, item_seq, item_seq_len, positions, items)
            proxies = proxies[valid]  # [P, K, H]
            ret_logits = self.retriever_scores(proxies, views, rows)  # [P, C]
        loss = sum(candidates.cross_entropy(logits)
                   for logits in self.fusion.train_logits(seq_logits, ret_logits, state))
        if terms:
            losses = self.auxiliary_losses(LossInputs(
                targets, ret_logits, proxies, views, item_seq, self.contrastive_temperature, candidates), terms)
            if self.uncertainty is not None:
                loss = loss + self.uncertainty(losses)
            else:
                for name, value in losses.items():
                    loss = loss + terms[name] * value
        return loss

    def auxiliary_losses(self, inputs: LossInputs, names) -> dict[str, torch.Tensor]:
        """Each named auxiliary loss, unweighted."""
        return {name: LOSS_TERMS[name].compute(inputs) for name in names}
