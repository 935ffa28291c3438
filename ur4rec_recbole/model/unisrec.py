"""UniSRec (Hou et al., "Towards Universal Sequence Representation Learning for Recommender Systems", KDD 2022).

Written here from the paper, on this package's pieces: an item's frozen text
vector (``dataset.features.item_text``, the knowledge vectors UR4Rec reads,
all-MiniLM-L6-v2 instead of the paper's BERT) goes through a mixture of
parametric-whitening experts (the MoE adaptor, eq. 2-4) into SASRec's
transformer (eq. 5); scores are cosines over a temperature (eq. 6).

- ``train_stage: inductive_ft``: an item is its adapted text alone (the
  paper's inductive setting: any item with a text can be scored);
- ``train_stage: transductive_ft``: adapted text plus an ID embedding.

No cross-domain pre-training: both variants train from scratch on the
target dataset's training portions only (the paper pre-trains on five other
Amazon categories first; none of that data is here). The history masks are
applied as for every model (``run/protocol.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.sasrec import SASRec
from torch import nn

from ur4rec_recbole.config.settings import require_choice, require_number
from ur4rec_recbole.data.repeats import decide_masks

TRAIN_STAGES = ("inductive_ft", "transductive_ft")


class ParametricWhitening(nn.Module):
    """``(dropout(x) - b) W``: a learned centring and projection of a frozen text vector (eq. 2)."""

    def __init__(self, input_size: int, output_size: int, dropout: float, initializer_range: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(input_size))  # [D]
        self.linear = nn.Linear(input_size, output_size, bias=False)  # W: [D, H]
        nn.init.normal_(self.linear.weight, mean=0.0, std=initializer_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., D] -> [..., H]
        return self.linear(self.dropout(x) - self.bias)


class MoEAdaptor(nn.Module):
    """``sum_k g_k (x - b_k) W_k``, gates a softmax of ``x W_g`` with learned Gaussian noise in training (eq. 3-4)."""

    NOISE_EPSILON = 1e-2  # least noise std while training

    def __init__(self, n_exps: int, input_size: int, output_size: int, dropout: float,
                 initializer_range: float) -> None:
        super().__init__()
        self.experts = nn.ModuleList(ParametricWhitening(input_size, output_size, dropout, initializer_range)
                                     for _ in range(n_exps))
        self.w_gate = nn.Parameter(torch.zeros(input_size, n_exps))  # [D, G]
        self.w_noise = nn.Parameter(torch.zeros(input_size, n_exps))  # [D, G]

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Each expert's weight for each row ``[..., G]`` (rows sum to 1)."""
        logits = x @ self.w_gate  # [..., G]
        if self.training:
            logits = logits + torch.randn_like(logits) * (F.softplus(x @ self.w_noise) + self.NOISE_EPSILON)
        return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., D] -> [..., H]
        experts = torch.stack([expert(x) for expert in self.experts], dim=-2)  # [..., G, H]
        return (self.gates(x)[..., None] * experts).sum(dim=-2)


class UniSRec(SASRec):
    """SASRec's transformer over MoE-adapted frozen text vectors (plus ID embeddings when transductive)."""

    honours_masks = True  # both history masks applied below (run/protocol.py)

    @classmethod
    def check_settings(cls, config) -> None:
        """Reject bad settings before any data is loaded (the Config calls this)."""
        require_choice(config, "loss_type", ("CE",))
        require_choice(config, "train_stage", TRAIN_STAGES)
        require_number(config, "n_exps", 1, integer=True)
        require_number(config, "adaptor_dropout", 0, 1)
        require_number(config, "temperature", 0, strict_low=True)

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)  # SASRec's embeddings, transformer and LayerNorm
        self.exclude_history, self.train_exclude_history = decide_masks(config, dataset).values()
        self.transductive = config["train_stage"] == "transductive_ft"
        self.temperature = float(config["temperature"])
        self.register_buffer("item_text", dataset.features.item_text.float())  # [N, D] frozen
        self.adaptor = MoEAdaptor(config["n_exps"], self.item_text.shape[1], self.hidden_size,
                                  config["adaptor_dropout"], config["initializer_range"])
        self.item_embedding.requires_grad_(self.transductive)  # inductive: items are their text alone

    def item_table(self) -> torch.Tensor:
        """Every item's representation ``[N, H]``: adapted text (+ ID embedding when transductive)."""
        table = self.adaptor(self.item_text)  # [N, H]
        return table + self.item_embedding.weight if self.transductive else table

    def sequence_state(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """The transformer's state after each sequence's last item ``[B, H]`` (SASRec's forward on ``table``)."""
        positions = torch.arange(item_seq.shape[1], device=item_seq.device)  # [L]
        hidden = table[item_seq] + self.position_embedding(positions)[None]  # [B, L, H]
        hidden = self.dropout(self.LayerNorm(hidden))
        output = self.trm_encoder(hidden, self.get_attention_mask(item_seq), output_all_encoded_layers=True)[-1]
        return self.gather_indexes(output, item_seq_len - 1)  # [B, H]

    def logits(self, interaction) -> torch.Tensor:
        """Cosine of each sequence state with every item over the temperature ``[B, N]`` (eq. 6)."""
        table = self.item_table()  # [N, H]
        state = self.sequence_state(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], table)  # [B, H]
        return F.normalize(state, dim=-1) @ F.normalize(table, dim=-1).T / self.temperature

    def calculate_loss(self, interaction) -> torch.Tensor:
        logits = self.logits(interaction)  # [B, N]
        target = interaction[self.POS_ITEM_ID]  # [B]
        if self.train_exclude_history:  # history items (the target excepted) leave the negatives
            seen = torch.zeros_like(logits, dtype=torch.bool).scatter(1, interaction[self.ITEM_SEQ], True)
            seen[:, 0] = False
            logits = logits.masked_fill(seen.scatter(1, target[:, None], False), float("-inf"))
        return F.cross_entropy(logits, target)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        scores = self.logits(interaction)  # [B, N]
        if self.exclude_history:
            scores = scores.scatter(1, interaction[self.ITEM_SEQ], float("-inf"))
        return scores

    def predict(self, interaction) -> torch.Tensor:
        return self.full_sort_predict(interaction).gather(1, interaction[self.ITEM_ID][:, None]).squeeze(1)
