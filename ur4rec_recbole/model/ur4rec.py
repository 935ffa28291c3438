"""UR4Rec: a SASRec backbone plus a preference retriever over offline texts.

Reuses RecBole's SASRec pieces (embeddings, ``trm_encoder``,
``get_attention_mask``, ``gather_indexes``). The score of item ``i`` for a
user is a fusion (``fusion`` in the config) of

- the sequence score ``h_t . e_i`` (SASRec), and
- the retriever score ``pool_k cos(proxy_k, item_i) / temperature`` (``proxy_pooling``), or with
  ``retriever_scoring: slots`` the attention-pooled match of the item with every memory slot
  (``retriever.py``).

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

import math
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.sasrec import SASRec

from ur4rec_recbole.data.dataset import HISTORY_START, TRAIN_FROM
from ur4rec_recbole.data.repeats import decide_masks
from ur4rec_recbole.config.settings import require, require_choice, require_number
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.model.candidates import CandidateLists, CandidateSettings, CandidateStage, recent_items
from ur4rec_recbole.model.dropout import use_same_mask_dropout
from ur4rec_recbole.model.fusion import FUSIONS
from ur4rec_recbole.model.losses import LOSS_TERMS, LossInputs, UncertaintyWeighting, applicable_terms
from ur4rec_recbole.model.modality import MODALITY_FUSIONS, ImageAdapter, ItemViews
from ur4rec_recbole.model.retriever import (ITEM_ADAPTERS, POOL_SCORES, PROXY_POOLINGS, PROXY_SHARES,
                                            RETRIEVER_QUERIES, RETRIEVER_SCORINGS, PreferenceRetriever, SlotBlock,
                                            SlotRead, take_rows)
from ur4rec_recbole.model.sampled_softmax import NEGATIVE_SAMPLERS, Candidates, training_item_counts
from ur4rec_recbole.model.unseen import BorrowedEmbeddings
from ur4rec_recbole.training.stages import parse_stages

PARAMETER_GROUPS = ("backbone", "retriever", "fusion", "losses")
TWO_STAGE_FUSIONS = ("weighted", "gate", "query")  # fusions two_stage may use (score-based, row-wise)


class ScoreParts(NamedTuple):
    """Scores of the catalogue ``[B, N]``: the ranking score and the two parts the fusion made it from."""

    score: torch.Tensor  # [B, N] what items are ranked by
    sequence: torch.Tensor | None  # [B, N] the sequence scorer's part (None when not asked for)
    retriever: torch.Tensor | None  # [B, N] the retriever's part (0 when the fusion does not use it)


class RetrieverReasons(NamedTuple):
    """What :meth:`UR4Rec.explain` returns (``M`` memory slots, ``K`` proxies, ``k`` items)."""

    attention: torch.Tensor  # [B, K, M] each proxy's attention over the slots, heads averaged; rows sum to 1
    item_attention: torch.Tensor  # [B, k, M] the attention behind each item's score (proxies mixed by share)
    valid: torch.Tensor  # [B, M] slots in the memory (masked ones have attention 0)
    slot_position: torch.Tensor  # [M] history position of each slot, -1 for the preference slot
    slot_kinds: list[str]  # [M] "preference", "text" or "image"
    proxy: torch.Tensor  # [B, k] the proxy whose match is each item's retriever score
    proxy_scores: torch.Tensor  # [B, K, k] every proxy's retriever score of each item
    score: torch.Tensor  # [B, k] each item's retriever score: the proxies' scores pooled (proxy_pooling)


class UR4Rec(SASRec):
    """SASRec + preference retriever + learned fusion (see module docstring)."""

    sized_from_data = True  # hidden_size and train_batch_size from the data when unset (config/data_rules.py)
    honours_masks = True  # exclude_history in score_parts, train_exclude_history in calculate_loss (run/protocol.py)

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
        require_choice(config, "item_adapter", ITEM_ADAPTERS)
        require_number(config, "adapter_rank", 1, integer=True)
        require_choice(config, "retriever_query", RETRIEVER_QUERIES)
        require_choice(config, "proxy_pooling", PROXY_POOLINGS)
        require_choice(config, "retriever_scoring", RETRIEVER_SCORINGS)
        if config["retriever_scoring"] == "slots":  # no proxy states: nothing for these to read
            require(config, "retriever_scoring", config["fusion"] != "query" and not config["diversity_weight"],
                    "proxies with fusion: query or diversity_weight > 0 (slots scoring has no proxy states)")
        require_number(config, "profile_cutoffs", 1, integer=True)
        for key in ("text_in_items", "use_profile"):
            require(config, key, isinstance(config[key], bool), "True or False")
        for term in LOSS_TERMS.values():
            require_number(config, term.weight_key, 0)
        require_number(config, "contrastive_temperature", 0, strict_low=True)
        require_choice(config, "fusion", FUSIONS)
        require(config, "fusion", config["fusion"] != "item_text" or config["text_in_items"],
                "another fusion, or text_in_items: True (fusion item_text is the text in the item table alone)")
        require(config, "proxy_pooling", config["proxy_pooling"] == "mean" or config["fusion"] != "query",
                "mean with fusion: query (it scores the mean proxy against the item table)")
        require_choice(config, "modality_fusion", MODALITY_FUSIONS)
        require_number(config, "fusion_weight", 0)
        require_number(config, "unseen_item_neighbours", 0, integer=True)
        require_number(config, "unseen_item_scale", 0)
        require_number(config, "unseen_item_training", 0, 1)
        require_number(config, "unseen_item_offset")
        require(config, "unseen_item_offset", math.isfinite(config["unseen_item_offset"]), "a finite number (0: off)")
        require_number(config, "cascade_k", 1, integer=True)
        require(config, "two_stage", isinstance(config["two_stage"], bool), "True or False")
        require_number(config, "candidate_count", 1, integer=True)
        shares = ("candidate_backbone_share", "candidate_text_share", "candidate_transition_share")
        for key in shares:
            require_number(config, key, 0, 1)
        require(config, "candidate_backbone_share", sum(float(config[k]) for k in shares) <= 1.0 + 1e-9,
                "shares (backbone + text + transition) that add up to at most 1")
        require_number(config, "candidate_text_window", 1, integer=True)
        require_number(config, "rerank_uniform_negatives", 0, integer=True)
        if config["two_stage"]:  # the rerank scores short lists: a fusion that reads scores, not whole-row ranks
            require(config, "fusion", config["fusion"] in TWO_STAGE_FUSIONS,
                    f"one of {list(TWO_STAGE_FUSIONS)} with two_stage: True (they fuse scores, not catalogue ranks)")
            require(config, "retriever_share", float(config["retriever_share"]) == 1.0,
                    "1.0 with two_stage: True (the rerank already scores short lists only)")
            require(config, "modalities", len(config["modalities"]) == 1 or config["retriever_scoring"] == "slots",
                    "one modality, or retriever_scoring: slots, with two_stage: True")
        require_number(config, "retriever_share", 0, 1, strict_low=True)
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
        self.register_buffer("profile_text", features.profile_text)  # [R + 1, D]
        self.register_buffer("profile_rows", features.profile_rows)  # [U, C]
        self.register_buffer("profile_cutoffs", features.profile_cutoffs)  # [U, C]
        self.all_positions = config["train_all_positions"]
        self.text_in_items = config["text_in_items"]
        self.use_profile = config["use_profile"]
        self.exclude_history, self.train_exclude_history = decide_masks(config, dataset).values()  # auto: from data
        self.proxy_pooling = config["proxy_pooling"]
        self.retriever_share = float(config["retriever_share"])
        self.sampled_softmax = config["train_negatives"] != "none"
        # sampled negatives: a step reads few rows of the item embedding, so its gradient is sparse and it is
        # updated by lazy Adam (training/optimizers.py); only where the trainer's learner is Adam without weight
        # decay, in one process (DDP all-reduces dense gradients)
        self.item_embedding.sparse = (self.sampled_softmax and str(config["learner"]).lower() == "adam"
                                      and not config["weight_decay"] and bool(config["single_spec"]))
        self.register_buffer("all_items", torch.arange(self.n_items), persistent=False)  # [N]
        counts = training_item_counts(dataset, self.n_items)  # [N]
        self.negatives = NEGATIVE_SAMPLERS[config["train_negatives"]](
            self.n_items, config["train_negatives_count"], counts)
        # items no training portion holds score with ID rows borrowed from their nearest seen items (unseen.py)
        unseen = counts == 0 if getattr(dataset, "training_histories", None) else torch.zeros_like(counts).bool()
        self.unseen_items = BorrowedEmbeddings(unseen, features.item_text_mask, config["unseen_item_neighbours"],
                                               config["unseen_item_scale"],
                                               training_rate=config["unseen_item_training"])
        self.unseen_offset = float(config["unseen_item_offset"])  # added to their ranking score (scoring only)
        # cold-item protocol: a cold item is no training negative either (else its ID embedding learns "never")
        cold = torch.zeros(self.n_items, dtype=torch.bool)
        cold[torch.as_tensor(getattr(dataset, "cold_items", np.zeros(0)), dtype=torch.long)] = True
        self.register_buffer("cold", cold, persistent=False)  # [N]
        self.has_cold = bool(cold.any())

        # two_stage: the candidate stage (candidates.py); the retriever and fusion rerank its lists
        self.two_stage = config["two_stage"]
        self.rerank_uniform = int(config["rerank_uniform_negatives"])
        self.candidate_stage = CandidateStage(
            CandidateSettings.from_config(config), features.item_text, features.item_text_mask,
            getattr(dataset, "training_histories", None), self.n_items) if self.two_stage else None

        self.retriever = PreferenceRetriever(config, features.item_text.shape[1], self.hidden_size,
                                             features.item_text, features.item_text_mask, self.layer_norm_eps)
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
        use_same_mask_dropout(self)  # the same masks as nn.Dropout, drawn faster on the CPU (dropout.py)

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
        if len(self.modalities) > 1 and config["retriever_scoring"] == "proxies":  # slots: matched per modality
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
    def id_rows(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """ID embedding rows of ``items`` (every item when None). ``[n, H]`` (a sparse embedding is always read
        by lookup, so its gradient stays sparse)"""
        if items is None:
            return self.item_embedding(self.all_items) if self.item_embedding.sparse else self.item_embedding.weight
        return self.item_embedding(items)

    def sparse_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters whose gradients are sparse (the optimiser gives them lazy Adam: training/optimizers.py)."""
        return [self.item_embedding.weight] if self.item_embedding.sparse else []

    def item_table(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Item representations the sequence model reads and scores with: ``[N, H]``, or the rows of ``items``
        ``[n, H]`` (the adapters are row-wise, so a row is the same either way).

        ``text_in_items`` (UniSRec-style) adds the adapted knowledge vector to
        each item's ID embedding, in input and output alike; ``fusion: none``
        switches it off with the rest of the text model (``fusion: item_text``
        keeps it alone, with no retriever score). When scoring (eval mode),
        items without training interactions read ID rows borrowed from their
        nearest seen items by text (``unseen.py``).
        """
        ids = self.id_rows(items)
        if not self.fusion.reads_text:  # the ID-only model (the ablation): IDs alone
            return ids
        if not self.training and self.unseen_items.active:  # scoring: unseen items borrow seen items' ID rows
            ids = self.unseen_items.replace(ids, self.item_embedding.weight, self.item_text, items)
        elif self.training and self.unseen_items.trains:  # unseen_item_training: seen items borrow at random
            ids = self.unseen_items.borrow_at_random(ids, self.item_embedding.weight, self.item_text, items)
        if self.text_in_items:
            text, mask = (self.item_text, self.item_text_mask) if items is None else (self.item_text[items],
                                                                                      self.item_text_mask[items])
            return ids + self.retriever.item_adapter(text) * mask[:, None]  # [n, H]
        return ids

    def sequence_states(self, item_seq: torch.Tensor, table: torch.Tensor | None = None,
                        rows: torch.Tensor | None = None) -> torch.Tensor:
        """SASRec's encoder output at every position. ``[B, L, H]`` (``rows`` ``[B, L]``: where each item of
        ``item_seq`` is in ``table``, when the table holds some items only)."""
        position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
        items = self.item_embedding(item_seq) if table is None else table[item_seq if rows is None else rows]
        hidden = items + self.position_embedding(position_ids)[None]  # [B, L, H]
        hidden = self.dropout(self.LayerNorm(hidden))
        mask = self.get_attention_mask(item_seq)  # causal + padding
        return self.trm_encoder(hidden, mask, output_all_encoded_layers=True)[-1]  # [B, L, H]

    def active_terms(self) -> dict[str, float]:
        """Auxiliary losses switched on now, with their weights (a stage may change the retrieval one)."""
        return {name: w for name, w in self.term_weights.items() if w > 0}

    def item_views(self, items: torch.Tensor | None = None) -> ItemViews:
        """Each modality's representation of the item ids ``items`` (every item when None). ``[n, H]``"""
        pick = (lambda table: table) if items is None else (lambda table: table[items])
        ids = self.id_rows(items)
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

    # -- preference profiles and memory --------------------------------------------
    def profile_of(self, users: torch.Tensor, read: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The preference vector each query reads: ``[P, D]`` and its validity ``[P]`` (users ``[P]``).

        ``read`` ``[P]`` (training): how many items of the user's training
        portion the query has read; it gets the newest profile whose cut-off is
        at most that, so nothing after its position. ``None`` (evaluation,
        serving): the newest profile, written from the whole training portion.
        """
        rows, cuts = self.profile_rows[users], self.profile_cutoffs[users]  # [P, C]
        if read is None:
            pick = (rows > 0).sum(1) - 1  # [P] the newest profile
        else:
            pick = (cuts <= read[:, None]).sum(1) - 1  # [P] the newest cut-off <= read
        row = rows.gather(1, pick.clamp(min=0)[:, None]).squeeze(1)  # [P]
        return self.profile_text[row], (pick >= 0) & (row > 0) & self.use_profile

    @property
    def user_text(self) -> torch.Tensor:
        """Each user's newest preference vector (what evaluation reads). ``[U, D]``"""
        return self.profile_of(torch.arange(len(self.profile_rows), device=self.profile_rows.device))[0]

    @property
    def user_text_mask(self) -> torch.Tensor:
        """Users whose preference slot is read at evaluation. ``[U]`` bool"""
        return self.profile_of(torch.arange(len(self.profile_rows), device=self.profile_rows.device))[1]

    def memory_of(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, views: ItemViews,
                  removed: torch.Tensor | None = None) -> tuple[tuple[torch.Tensor, ...], list[str]]:
        """The retriever's history memory (each query adds its own preference slot in ``proxy_states``).

        item_seq ``[B, L]``: rows of ``views`` (item ids when the views cover
        the catalogue); ``removed`` ``[B, L]`` (optional) takes those history
        items out of the memory. Returns (memory ``[B, M, H]``, valid ``[B, M]``,
        slot_position ``[M]``) and each slot's kind (``text``, ``image``).
        """
        in_history = torch.arange(item_seq.shape[1], device=item_seq.device) < item_seq_len[:, None]  # [B, L]
        if removed is not None:
            in_history = in_history & ~removed
        if views.single is not None:
            blocks = [(take_rows(views.single, item_seq), in_history)]
            kinds = ["text" if views.text is not None else "image"]
        else:  # text slots, then image slots; items without an image are masked out of the memory
            has_image = in_history & views.image_mask[item_seq]  # [B, L]
            blocks = [(take_rows(views.text, item_seq), in_history), (take_rows(views.image, item_seq), has_image)]
            kinds = ["text", "image"]
        return self.retriever.memory(blocks), [kind for kind in kinds for _ in range(item_seq.shape[1])]

    def _proxies(self, interaction, item_seq: torch.Tensor, item_seq_len: torch.Tensor, rows: torch.Tensor,
                 positions: torch.Tensor, states: torch.Tensor, items: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, ItemViews, torch.Tensor | None]:
        """Training: proxy states ``[P, K, H]`` of the queries at (``rows``, ``positions``) ``[P]``, the item
        views, and the rows of ``items`` in them.

        ``states [P, H]``: the sequence states there. Each query reads the
        profile written from the portion items up to its position. ``items``
        None: the views hold the whole catalogue (rows None = all). With one
        modality and sampled candidates, only the histories' and the
        candidates' items are represented, so a step does no O(N) work.
        """
        if items is not None and len(self.modalities) == 1:
            needed, inverse = torch.unique(torch.cat([item_seq.flatten(), items]), return_inverse=True)
            views = self.item_views(needed)  # [n, H]
            seq_rows, item_rows = inverse[: item_seq.numel()].view_as(item_seq), inverse[item_seq.numel():]
        else:  # (the image losses index the views by item id)
            views, seq_rows, item_rows = self.item_views(), item_seq, items
        memory, _ = self.memory_of(seq_rows, item_seq_len, views)
        read = interaction[HISTORY_START][rows] + positions + 1  # [P] portion items read at the position
        profile, profile_valid = self.profile_of(interaction[self.USER_ID][rows], read)
        proxies = self._read(memory, rows, positions, self.retriever.user_adapter(profile), profile_valid, states,
                             seq_rows)
        return proxies, views, item_rows

    def _read(self, memory: tuple[torch.Tensor, ...], rows: torch.Tensor, positions: torch.Tensor,
              profile: torch.Tensor, profile_valid: torch.Tensor, states: torch.Tensor, seq_rows: torch.Tensor,
              return_attention: bool = False):
        """What the retriever reads of the memory for each query: proxy states ``[P, K, H]`` (with their
        attention when asked), or under ``retriever_scoring: slots`` a :class:`SlotRead` (``seq_rows``
        ``[B, L]``: each history item's row in the item views; every modality block repeats them)."""
        if self.retriever.scoring == "slots":
            slot_rows = seq_rows.repeat(1, memory[0].shape[1] // seq_rows.shape[1])  # [B, M]
            return self.retriever.slot_read(*memory, rows, positions, profile, profile_valid, states, slot_rows)
        return self.retriever.proxy_states(*memory, rows, positions, profile, profile_valid, states,
                                           return_attention=return_attention)

    def retriever_proxy_scores(self, proxies: torch.Tensor, views: ItemViews, table: torch.Tensor) -> torch.Tensor:
        """Each proxy's retriever score of the items ``[P, K, n]`` (``views``/``table``: their rows), pooled
        over proxies by ``proxy_pooling`` into the retriever score."""
        if self.fusion.reads_item_table:
            return torch.einsum("pkh,nh->pkn", proxies, table)
        if views.single is not None:
            sims = self.retriever.proxy_similarities(proxies, views.single)
        else:
            sims = self.image_modules["fusion"].proxy_scores(proxies, views.text, views.image, views.image_mask)
        return sims / self.retriever.temperature

    def retriever_scores(self, proxies: torch.Tensor, views: ItemViews, rows: torch.Tensor | None,
                         table: torch.Tensor) -> torch.Tensor:
        """Retriever score of the candidates for each query's proxies ``[P, K, H]``: ``[P, C]``.

        ``rows``: the candidates' rows in ``views`` (None: all); ``table``: their rows of the
        item table (``fusion: query`` scores the mean proxy against it).
        """
        if self.fusion.reads_item_table:
            return proxies.mean(dim=1) @ table.T
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        if isinstance(proxies, SlotRead):
            return self.retriever.slot_scores(proxies, self.slot_blocks(views, pick))
        if views.single is not None:
            return self.retriever.score(proxies, pick(views.single))
        fused = self.image_modules["fusion"].score(proxies, pick(views.text), pick(views.image),
                                                   pick(views.image_mask))
        return fused / self.retriever.temperature

    @staticmethod
    def slot_blocks(views: ItemViews, pick) -> list[SlotBlock]:
        """The memory's modality blocks for late interaction, candidates taken from the views by ``pick``."""
        if views.single is not None:
            return [SlotBlock(views.single, pick(views.single), None)]
        return [SlotBlock(views.text, pick(views.text), None),
                SlotBlock(views.image, pick(views.image), pick(views.image_mask))]

    # -- serving --------------------------------------------------------------
    def score_parts(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, user_text: torch.Tensor,
                    user_valid: torch.Tensor, views: ItemViews | None = None,
                    removed: torch.Tensor | None = None, parts: bool = True,
                    table: torch.Tensor | None = None) -> ScoreParts:
        """Scores of the whole catalogue after each history, with each scorer's part.

        Users are given by their preference vectors ``user_text`` ``[B, D]``
        (``user_valid`` ``[B]`` False masks the slot), so a user the model never
        saw is scored from a vector computed at request time. ``views`` and
        the item ``table`` may be cached by the caller (they depend on the
        weights only);
        ``removed`` takes history items out of the retriever's memory;
        ``parts=False`` returns the ranking score alone (evaluation). The
        ranking score adds ``unseen_item_offset`` for items without training
        interactions (text-reading fusions); the parts do not hold it.
        """
        table = self.item_table() if table is None else table
        state = self.gather_indexes(self.sequence_states(item_seq, table), item_seq_len - 1)  # [B, H]
        seq_scores = state @ table.T  # [B, N]
        if self.two_stage:
            return self._reranked(seq_scores, state, item_seq, item_seq_len, user_text, user_valid, views, removed,
                                  table, parts)
        ret_scores = None
        if self.fusion.uses_retriever:
            views = self.item_views() if views is None else views
            proxies = self._last_proxies(item_seq, item_seq_len, user_text, user_valid, state, views, removed)[0]
            ret_scores = self.retriever_scores(proxies, views, None, table)  # [B, N]
        score = self.fusion.rank_scores(seq_scores, ret_scores, state)
        if self.unseen_offset and self.fusion.reads_text:  # unseen_item_offset: new items promoted (or demoted)
            score = score + self.unseen_offset * self.unseen_items.from_text  # [B, N]
        if self.exclude_history:  # items already in the history are not recommended again
            score = score.scatter(1, item_seq, float("-inf"))
        if not parts:
            return ScoreParts(score, None, None)
        return ScoreParts(score, *self.fusion.parts(seq_scores, ret_scores, state))

    def candidate_lists(self, ranking: torch.Tensor, item_seq: torch.Tensor, last: torch.Tensor) -> CandidateLists:
        """The candidate stage's lists (two_stage) for queries whose backbone scores are ``ranking`` ``[P, N]`` and
        whose newest item is at ``item_seq[p, last[p]]``: the one function training and scoring both call."""
        backbone = ranking.detach().topk(self.candidate_stage.backbone_depth, dim=1).indices  # [P, depth]
        window = self.candidate_stage.settings.text_window
        return self.candidate_stage.lists(backbone, recent_items(item_seq, last, window))

    def _reranked(self, seq_scores: torch.Tensor, state: torch.Tensor, item_seq: torch.Tensor,
                  item_seq_len: torch.Tensor, user_text: torch.Tensor, user_valid: torch.Tensor,
                  views: ItemViews | None, removed: torch.Tensor | None, table: torch.Tensor,
                  parts: bool) -> ScoreParts:
        """two_stage scoring: candidates from the candidate stage, reranked by the fusion; every other item keeps
        the backbone's order below them (so full-ranking metrics stay defined). ``[B, N]``"""
        ranking = seq_scores.scatter(1, item_seq, float("-inf")) if self.exclude_history else seq_scores
        cands = self.candidate_lists(ranking, item_seq, item_seq_len - 1).items  # [B, M]
        seq, ret, fused = self.rerank(state, cands, item_seq, item_seq_len, user_text, user_valid, views, table,
                                      removed)
        below = ranking - seq_scores.amax(dim=1, keepdim=True) - 1.0  # every value <= -1 (-inf stays -inf)
        score = below.scatter(1, cands, fused - fused.amin(dim=1, keepdim=True))  # candidates >= 0
        if self.exclude_history:
            score = score.scatter(1, item_seq, float("-inf"))
        if not parts:
            return ScoreParts(score, None, None)
        seq_part, ret_part = self.fusion.parts(seq, ret, state)
        return ScoreParts(score, seq_scores, torch.zeros_like(seq_scores).scatter(1, cands, ret_part))

    def rerank(self, state: torch.Tensor, cands: torch.Tensor, item_seq: torch.Tensor, item_seq_len: torch.Tensor,
               user_text: torch.Tensor, user_valid: torch.Tensor, views: ItemViews | None, table: torch.Tensor,
               removed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The second stage: sequence, retriever and fused scores of each query's candidates ``cands`` ``[B, M]``
        (``state`` ``[B, H]``: the sequence states; ``table``: the item table, cached by servers). ``[B, M]`` each;
        the fused score holds ``unseen_item_offset``."""
        union, columns = cands.unique(return_inverse=True)  # [C], [B, M]
        views = self.item_views() if views is None else views
        proxies = self._last_proxies(item_seq, item_seq_len, user_text, user_valid, state, views, removed)[0]
        ret = self.retriever_scores_at(proxies, views, union, table[union], columns)  # [B, M]
        seq = torch.einsum("bh,bmh->bm", state, take_rows(table, cands))  # [B, M]
        fused = self.fusion.rank_scores(seq, ret, state)  # [B, M]
        if self.unseen_offset and self.fusion.reads_text:
            fused = fused + self.unseen_offset * self.unseen_items.from_text[cands]
        return seq, ret, fused

    def retriever_scores_at(self, proxies, views: ItemViews, rows: torch.Tensor, table: torch.Tensor,
                            columns: torch.Tensor) -> torch.Tensor:
        """Retriever score of each query's own candidates ``[P, C']``: ``columns`` index ``rows`` ``[C]`` (the
        candidates' rows in ``views``) and ``table`` ``[C, H]`` (their item-table rows)."""
        if self.fusion.reads_item_table:
            return torch.einsum("ph,pch->pc", proxies.mean(dim=1), take_rows(table, columns))
        pick = lambda t: t[rows]  # noqa: E731
        if isinstance(proxies, SlotRead):
            return self.retriever.slot_scores_at(proxies, self.slot_blocks(views, pick), columns)
        items = F.normalize(take_rows(pick(views.single), columns), dim=-1)  # [P, C', H]
        sims = torch.einsum("pkh,pch->pkc", F.normalize(proxies, dim=-1), items) / self.retriever.temperature
        return POOL_SCORES[self.proxy_pooling](sims)

    def _last_proxies(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, user_text: torch.Tensor,
                      user_valid: torch.Tensor, state: torch.Tensor, views: ItemViews,
                      removed: torch.Tensor | None = None, return_attention: bool = False):
        """Proxy states ``[B, K, H]`` (or a :class:`SlotRead`) after each whole history (evaluation, serving),
        with the memory and its slot kinds; with ``return_attention`` also each proxy's attention ``[B, K, 1 + M]``."""
        memory, kinds = self.memory_of(item_seq, item_seq_len, views, removed)
        rows = torch.arange(len(item_seq), device=item_seq.device)
        out = self._read(memory, rows, item_seq_len - 1, self.retriever.user_adapter(user_text),
                         user_valid & self.use_profile, state, item_seq, return_attention=return_attention)
        return out, memory, kinds

    def explain(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, user_text: torch.Tensor,
                user_valid: torch.Tensor, items: torch.Tensor, views: ItemViews | None = None,
                removed: torch.Tensor | None = None, table: torch.Tensor | None = None) -> RetrieverReasons:
        """What the retriever read to score ``items`` ``[B, k]`` after each history (the model in eval mode).

        Each proxy's attention over the memory slots (the preference slot
        first) at the last position, averaged over heads (a probability
        distribution over the slots it sees); for each item the mix of the
        proxies' attention by each proxy's share of the item's pooled score
        (``PROXY_SHARES``: the winner alone under ``max``, the softmax of the
        proxy scores under ``logsumexp``, equal shares under ``mean``), which
        is ``item_attention``, what explanations name. Under
        ``retriever_scoring: slots`` ``item_attention`` is the item's own
        attention, each slot's exact share of its score. Explanations are built
        from this alone, so they follow the retriever. ``removed`` ``[B, L]``
        takes history items out of the memory first (slot effects).
        """
        views = self.item_views() if views is None else views
        table = self.item_table() if table is None else table
        state = self.gather_indexes(self.sequence_states(item_seq, table), item_seq_len - 1)  # [B, H]
        read, (memory, valid, slot_position), kinds = self._last_proxies(
            item_seq, item_seq_len, user_text, user_valid, state, views, removed, return_attention=True)
        valid = torch.cat([(user_valid & self.use_profile)[:, None], valid], dim=1)  # [B, 1 + M]
        slot_position = torch.cat([slot_position.new_full((1,), -1), slot_position])  # [1 + M]
        if isinstance(read, SlotRead):  # late interaction: the item's own attention is its score's split
            asked = [(b.candidates, b.candidate_valid) for b in self.slot_blocks(views, lambda t: t[items])]
            attention, item_attention, per_proxy, score = self.retriever.slot_reasons(read, memory, asked)
            return RetrieverReasons(attention, item_attention, valid, slot_position, ["preference", *kinds],
                                    per_proxy.argmax(dim=1), per_proxy, score)
        proxies, attention = read
        wanted, where = items.unique(return_inverse=True)  # [U], [B, k]: score only the items asked about
        per_proxy = self.retriever_proxy_scores(proxies, views.take(wanted), table[wanted])  # [B, K, U]
        per_proxy = per_proxy.gather(2, where[:, None, :].expand(-1, per_proxy.shape[1], -1))  # [B, K, k]
        pooling = self.proxy_pooling if views.single is not None else "max"  # the modality fusions take the max
        shares = PROXY_SHARES[pooling](per_proxy)  # [B, K, k]
        item_attention = torch.einsum("bkj,bkm->bjm", shares, attention)  # [B, k, 1 + M]
        return RetrieverReasons(attention, item_attention, valid, slot_position, ["preference", *kinds],
                                per_proxy.argmax(dim=1), per_proxy, POOL_SCORES[pooling](per_proxy))

    def seen_before(self, item_seq: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor,
                    candidates: Candidates) -> torch.Tensor:
        """Candidates each training query has already read (its own target excepted). ``[P, C]`` bool

        ``train_exclude_history`` masks them out of the softmax, as
        ``exclude_history`` takes them out of the ranking.
        """
        upto = torch.arange(item_seq.shape[1], device=item_seq.device) <= positions[..., None]  # [B, T, L]
        read = torch.where(upto, item_seq[:, None, :], 0)[valid]  # [P, L] items read, 0 elsewhere
        seen = torch.zeros(len(read), self.n_items, dtype=torch.bool, device=read.device).scatter(1, read, True)
        seen[:, 0] = False
        seen = seen[:, candidates.items] if not candidates.whole else seen  # [P, C]
        return seen.scatter(1, candidates.labels[:, None], False)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        user = interaction[self.USER_ID]  # [B]
        profile, profile_valid = self.profile_of(user)
        return self.score_parts(item_seq, item_seq_len, profile, profile_valid, parts=False).score

    def predict(self, interaction) -> torch.Tensor:
        # rank-based fusions need the whole catalogue, so score it and pick the asked items
        scores = self.full_sort_predict(interaction)  # [B, N]
        return scores.gather(1, interaction[self.ITEM_ID][:, None]).squeeze(1)

    # -- training -----------------------------------------------------------
    def calculate_loss(self, interaction) -> torch.Tensor:
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]  # [B]
        if self.sampled_softmax:  # the item table only for the rows this step reads: no O(N) adapter work
            table, (needed, rows) = None, torch.unique(item_seq, return_inverse=True)
            states = self.sequence_states(item_seq, self.item_table(needed), rows)  # [B, L, H]
        else:
            table = self.item_table()  # [N, H]
            states = self.sequence_states(item_seq, table)  # [B, L, H]
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
        if table is None:  # sampled softmax: the candidates' rows (all of them when the sample is the catalogue)
            candidate_table = self.item_table(items)  # [C, H]
        else:
            candidate_table = table if items is None else table[items]  # [C, H]
        if self.two_stage:
            return self._two_stage_loss(interaction, item_seq, item_seq_len, positions, valid, state, targets,
                                        candidates, candidate_table)

        ret_logits = proxies = views = None
        terms = self.active_terms()
        scored = None  # [P] bool: the positions the retriever scores (None: all of them)
        if self.fusion.uses_retriever or terms:
            rows = torch.arange(len(item_seq), device=item_seq.device)[:, None].expand_as(positions)[valid]  # [P]
            scored = self.retriever_rows(rows, len(item_seq))
            pick = (lambda t: t) if scored is None else (lambda t: t[scored])
            proxies, views, item_rows = self._proxies(interaction, item_seq, item_seq_len, pick(rows),
                                                      pick(positions[valid]), pick(state), items)  # [P', K, H]
            ret_logits = self.retriever_scores(proxies, views, item_rows, candidate_table)  # [P', C]
        # (candidates, logits to train, their rows among the P): the retriever's rows by the fusion, the others
        # (retriever_share < 1) by the sequence score alone; each group's sequence logits from its own states
        # (cheaper than splitting one [P, C] product and its gradient)
        if scored is None:
            groups = [(candidates, self.fusion.train_logits(state @ candidate_table.T, ret_logits, state), None)]
        else:
            kept, rest = state[scored], state[~scored]  # [P', H], [P - P', H]
            groups = [(candidates.rows(scored), self.fusion.train_logits(kept @ candidate_table.T, ret_logits, kept),
                       scored), (candidates.rows(~scored), [rest @ candidate_table.T], ~scored)]
        if self.train_exclude_history:
            seen = self.seen_before(item_seq, positions, valid, candidates)  # [P, C]
            groups = [(c, [logits.masked_fill(seen if keep is None else seen[keep], float("-inf"))
                           for logits in logit_list], keep) for c, logit_list, keep in groups]
        if self.has_cold:  # cold items are out of every softmax (after the fusion: -inf must not meet its weight)
            cold = (self.cold if candidates.whole else self.cold[candidates.items])[None, :]  # [1, C]
            groups = [(c, [logits.masked_fill(cold, float("-inf")) for logits in logit_list], keep)
                      for c, logit_list, keep in groups]
            ret_logits = None if ret_logits is None else ret_logits.masked_fill(cold, float("-inf"))  # InfoNCE
        # the mean over all P positions: each group weighted by its share of them
        loss = sum((1.0 if keep is None else int(keep.sum()) / len(keep)) * sum(c.cross_entropy(logits)
                                                                                for logits in logit_list)
                   for c, logit_list, keep in groups if keep is None or keep.any())
        if terms:  # the retriever's InfoNCE over the positions it scored (the first group)
            losses = self.auxiliary_losses(LossInputs(
                targets if scored is None else targets[scored], ret_logits,
                None if isinstance(proxies, SlotRead) else proxies, views, item_seq, self.contrastive_temperature,
                groups[0][0]), terms)
            if self.uncertainty is not None:
                loss = loss + self.uncertainty(losses)
            else:
                for name, value in losses.items():
                    loss = loss + terms[name] * value
        return loss

    def loss_positions(self, interaction) -> int:
        """How many training positions :meth:`calculate_loss` averages over (DDP weighs each process by it)."""
        if not self.all_positions:
            return len(interaction)
        return int((interaction[self.ITEM_SEQ_LEN] - interaction[TRAIN_FROM]).sum())

    def _two_stage_loss(self, interaction, item_seq: torch.Tensor, item_seq_len: torch.Tensor,
                        positions: torch.Tensor, valid: torch.Tensor, state: torch.Tensor, targets: torch.Tensor,
                        candidates: Candidates, candidate_table: torch.Tensor) -> torch.Tensor:
        """two_stage training: the backbone's softmax over ``candidates`` (the catalogue or a sample) plus the
        rerank's softmax over each position's candidate list, which holds the target, the candidate stage's
        list for that position (hard negatives; built by :meth:`candidate_lists`, as scoring builds it) and
        ``rerank_uniform_negatives`` uniform items. The auxiliary losses read the rerank's retriever scores."""
        seq_logits = state @ candidate_table.T  # [P, C]
        if self.has_cold:
            seq_logits = seq_logits.masked_fill((self.cold if candidates.whole else self.cold[candidates.items])[None],
                                                float("-inf"))
        if self.train_exclude_history:
            seen = self.seen_before(item_seq, positions, valid, candidates)  # [P, C]
            seq_logits = seq_logits.masked_fill(seen, float("-inf"))
        loss = candidates.cross_entropy(seq_logits)
        rows = torch.arange(len(item_seq), device=item_seq.device)[:, None].expand_as(positions)[valid]  # [P]
        with torch.no_grad():  # the lists: what scoring would build after the same items
            if candidates.whole:
                ranking = seq_logits.detach()
            else:
                ranking = state.detach() @ self.item_table().detach().T  # [P, N]
            lists = self.candidate_lists(ranking, item_seq[rows], positions[valid]).items  # [P, M]
            uniform = torch.randint(1, self.n_items, (len(rows), self.rerank_uniform), device=rows.device)
            listed = torch.cat([targets[:, None], lists, uniform], dim=1)  # [P, 1 + M + U], the target in column 0
            offset = torch.zeros(listed.shape, device=rows.device)
            unusable = (listed == targets[:, None]) | (listed == 0) | self.cold[listed]
            offset = offset.masked_fill(unusable & (torch.arange(listed.shape[1], device=rows.device) > 0),
                                        float("-inf"))
        union, columns = listed.unique(return_inverse=True)  # [C'], [P, 1 + M + U]
        proxies, views, item_rows = self._proxies(interaction, item_seq, item_seq_len, rows, positions[valid],
                                                  state, union)
        union_table = self.item_table(union)  # [C', H]
        ret_logits = self.retriever_scores_at(proxies, views, item_rows, union_table, columns)  # [P, 1 + M + U]
        seq = torch.einsum("ph,pch->pc", state, take_rows(union_table, columns))  # [P, 1 + M + U]
        reranked = Candidates(union, torch.zeros(len(rows), dtype=torch.long, device=rows.device), offset)
        loss = loss + sum(reranked.cross_entropy(logits) for logits in self.fusion.train_logits(seq, ret_logits, state))
        terms = self.active_terms()
        if terms:
            losses = self.auxiliary_losses(LossInputs(
                targets, ret_logits, None if isinstance(proxies, SlotRead) else proxies, views, item_seq,
                self.contrastive_temperature, reranked), terms)
            if self.uncertainty is not None:
                loss = loss + self.uncertainty(losses)
            else:
                for name, value in losses.items():
                    loss = loss + terms[name] * value
        return loss

    def retriever_rows(self, rows: torch.Tensor, batch: int) -> torch.Tensor | None:
        """Training positions the retriever scores: all (None) by default; with ``retriever_share`` < 1 those of
        a random share of the batch's windows (at least one), ``[P]`` bool. Whole windows, so the distinct
        history items the slot kernel scores shrink with the share too."""
        if self.retriever_share >= 1.0:
            return None
        chosen = torch.rand(batch, device=rows.device) < self.retriever_share  # [B]
        if not chosen.any():
            chosen[torch.randint(batch, (1,), device=rows.device)] = True
        return chosen[rows]

    def auxiliary_losses(self, inputs: LossInputs, names) -> dict[str, torch.Tensor]:
        """Each named auxiliary loss, unweighted."""
        return {name: LOSS_TERMS[name].compute(inputs) for name in names}
