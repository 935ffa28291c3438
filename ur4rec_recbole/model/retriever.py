"""The preference retriever: proxy queries over a causal user memory, scored against item texts.

Memory of a user at position ``t`` = [the newest preference profile written
from items ``0..t`` (``texts/profiles.py``); the knowledge vectors of the items
at positions ``0..t``] (plus their image vectors with images as a second
modality). ``K`` proxy queries cross-attend over it and the retriever score of
item ``i`` pools ``cos(proxy_k, item_i) / temperature`` over the proxies.

Each design choice is a registry entry chosen in the config (README, "The
retriever"): ``item_adapter`` (how a knowledge vector becomes an item
representation: ``mlp``, ``linear``, ``lowrank``, ``frozen``),
``retriever_query`` (``proxies``: K learned queries; ``state``: the same
queries shifted by the sequence state at the position) and ``proxy_pooling``
(``max``, ``logsumexp``, ``mean``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


# -- item adapters: knowledge vector [N, D] -> item representation [N, H] --------------------------------------
class MLPAdapter(nn.Sequential):
    """``mlp``: two trainable layers (the original design; can learn a pseudo-ID per item)."""

    def __init__(self, text_dim: int, hidden: int, config, item_text: torch.Tensor, item_mask: torch.Tensor) -> None:
        super().__init__(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


class LinearAdapter(nn.Linear):
    """``linear``: one bias-free linear map; similar texts stay similar items."""

    def __init__(self, text_dim: int, hidden: int, config, item_text: torch.Tensor, item_mask: torch.Tensor) -> None:
        super().__init__(text_dim, hidden, bias=False)


class LowRankAdapter(nn.Sequential):
    """``lowrank``: ``D -> adapter_rank -> H``, both maps bias-free: too few degrees of freedom to memorise items."""

    def __init__(self, text_dim: int, hidden: int, config, item_text: torch.Tensor, item_mask: torch.Tensor) -> None:
        rank = config["adapter_rank"]
        super().__init__(nn.Linear(text_dim, rank, bias=False), nn.Linear(rank, hidden, bias=False))


class FrozenAdapter(nn.Module):
    """``frozen``: the top-``H`` principal directions of the centred knowledge vectors, fixed; one learned gain.

    Nothing item-specific can be learned, so the retriever ranks by text alone
    (text k-NN with learned queries). The projection is computed from the
    catalogue's vectors when the model is built and saved with it.
    """

    def __init__(self, text_dim: int, hidden: int, config, item_text: torch.Tensor, item_mask: torch.Tensor) -> None:
        super().__init__()
        known = item_text[item_mask]  # [n, D]
        mean = known.mean(0) if len(known) else item_text.new_zeros(text_dim)
        basis = torch.zeros(text_dim, hidden)
        if len(known) > 1:
            _, _, v = torch.linalg.svd(known - mean, full_matrices=False)  # v: [min(n, D), D]
            take = min(hidden, v.shape[0])
            basis[:, :take] = v[:take].T
        self.register_buffer("mean", mean)  # [D]
        self.register_buffer("basis", basis)  # [D, H]
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.gain * F.normalize((text - self.mean) @ self.basis, dim=-1)  # [..., H]


ITEM_ADAPTERS: dict[str, type[nn.Module]] = {
    "mlp": MLPAdapter,
    "linear": LinearAdapter,
    "lowrank": LowRankAdapter,
    "frozen": FrozenAdapter,
}


# -- proxy pooling: cosines [P, K, N] -> scores [P, N] -------------------------------------------------------
def max_pooling(unit_proxies: torch.Tensor, unit_items: torch.Tensor, temperature: float) -> torch.Tensor:
    """``max_k cos / tau``: the best proxy per item (only the winner gets a gradient)."""
    return torch.einsum("pkh,nh->pkn", unit_proxies, unit_items).amax(dim=1) / temperature


def logsumexp_pooling(unit_proxies: torch.Tensor, unit_items: torch.Tensor, temperature: float) -> torch.Tensor:
    """``tau-smoothed max``: ``logsumexp_k(cos / tau) - log K``; every proxy gets gradient by its softmax share."""
    sims = torch.einsum("pkh,nh->pkn", unit_proxies, unit_items) / temperature  # [P, K, N]
    return torch.logsumexp(sims, dim=1) - math.log(sims.shape[1])


def mean_pooling(unit_proxies: torch.Tensor, unit_items: torch.Tensor, temperature: float) -> torch.Tensor:
    """``mean_k cos / tau``: one matrix product with the mean unit proxy (the cheapest)."""
    return unit_proxies.mean(dim=1) @ unit_items.T / temperature  # [P, N]


PROXY_POOLINGS = {"max": max_pooling, "logsumexp": logsumexp_pooling, "mean": mean_pooling}

# the pooled score from each proxy's score: [P, K, N] -> [P, N] (what score() computes from the vectors)
POOL_SCORES = {
    "max": lambda scores: scores.amax(dim=1),
    "logsumexp": lambda scores: torch.logsumexp(scores, dim=1) - math.log(scores.shape[1]),
    "mean": lambda scores: scores.mean(dim=1),
}

# each proxy's share of an item's pooled score (its share of the gradient): [P, K, N] scores -> [P, K, N] weights
PROXY_SHARES = {
    "max": lambda scores: F.one_hot(scores.argmax(dim=1), scores.shape[1]).transpose(1, 2).to(scores.dtype),
    "logsumexp": lambda scores: torch.softmax(scores, dim=1),
    "mean": lambda scores: torch.full_like(scores, 1.0 / scores.shape[1]),
}
RETRIEVER_QUERIES = ("proxies", "state")


class PreferenceRetriever(nn.Module):
    """Proxy cross-attention over [preference profile; history knowledge], pooled cosine scores."""

    def __init__(self, config, text_dim: int, hidden: int, item_text: torch.Tensor, item_mask: torch.Tensor,
                 layer_norm_eps: float) -> None:
        super().__init__()
        n_heads = config["retriever_heads"]
        self.n_heads, self.head_dim = n_heads, hidden // n_heads
        self.temperature = float(config["retriever_temperature"])
        self.pool = PROXY_POOLINGS[config["proxy_pooling"]]
        # knowledge -> item representation (shared by memory and candidates)
        self.item_adapter = ITEM_ADAPTERS[config["item_adapter"]](text_dim, hidden, config, item_text, item_mask)
        # preference profile -> one memory slot
        self.user_adapter = nn.Linear(text_dim, hidden)
        # items without a knowledge text are represented through their ID embedding
        self.id_adapter = nn.Linear(hidden, hidden)
        self.proxies = nn.Parameter(torch.empty(config["n_proxies"], hidden))
        # state: the sequence state at the position shifts every proxy query (zero-initialised by the model)
        self.state_query = nn.Linear(hidden, hidden) if config["retriever_query"] == "state" else None
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.norm1 = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.dropout = nn.Dropout(config["retriever_dropout"])

    def item_representations(self, item_text: torch.Tensor, item_text_mask: torch.Tensor,
                             id_embeddings: torch.Tensor) -> torch.Tensor:
        """Adapted knowledge per item, ID-based for items without text. ``[N, H]``"""
        from_text = self.item_adapter(item_text)  # [N, H]
        from_id = self.id_adapter(id_embeddings)  # [N, H]
        return torch.where(item_text_mask[:, None], from_text, from_id)

    @staticmethod
    def memory(histories: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        """History memory slots, their validity and history index.

        Each history block is (representations ``[B, L, H]``, valid ``[B, L]``),
        e.g. knowledge vectors, then image vectors. Returns memory ``[B, M, H]``,
        valid ``[B, M]`` and slot_position ``[M]`` (the block's history index).
        """
        length = histories[0][0].shape[1]
        index = torch.arange(length, device=histories[0][0].device)
        memory = torch.cat([h for h, _ in histories], dim=1)  # [B, M, H]
        valid = torch.cat([v for _, v in histories], dim=1)  # [B, M]
        return memory, valid, index.repeat(len(histories))

    def proxy_states(self, memory: torch.Tensor, valid: torch.Tensor, slot_position: torch.Tensor,
                     rows: torch.Tensor, positions: torch.Tensor, profile: torch.Tensor, profile_valid: torch.Tensor,
                     states: torch.Tensor, return_attention: bool = False):
        """Proxy outputs for each query: ``[P, K, H]``.

        memory ``[B, M, H]``, valid ``[B, M]``, slot_position ``[M]`` (see
        :meth:`memory`); per query: rows ``[P]`` (its batch row), positions
        ``[P]`` (the last history index it may see), profile ``[P, H]`` and
        profile_valid ``[P]`` (the adapted preference slot it sees: the newest
        profile written from items up to its position), states ``[P, H]`` (the
        sequence state there). With ``return_attention`` also each proxy's
        attention over [preference; memory] averaged over heads ``[P, K, 1 + M]``
        (a distribution over the slots it may see; what explanations show).
        """
        batch, slots, _ = memory.shape
        mask = (slot_position[None, :] <= positions[:, None]) & valid[rows]  # [P, M]
        mask = torch.cat([profile_valid[:, None], mask], dim=-1)  # [P, 1 + M]
        k = self.key(memory).view(batch, slots, self.n_heads, self.head_dim)[rows]  # [P, M, nh, d]
        v = self.value(memory).view(batch, slots, self.n_heads, self.head_dim)[rows]  # [P, M, nh, d]
        k = torch.cat([self.key(profile).view(-1, 1, self.n_heads, self.head_dim), k], dim=1)  # [P, 1 + M, nh, d]
        v = torch.cat([self.value(profile).view(-1, 1, self.n_heads, self.head_dim), v], dim=1)
        base = self.proxies.expand(len(rows), -1, -1)  # [P, K, H]
        if self.state_query is not None:
            base = base + self.state_query(states)[:, None]  # queries conditioned on the sequence state
        q = self.query(base).view(*base.shape[:2], self.n_heads, self.head_dim)  # [P, K, nh, d]
        logits = torch.einsum("pknd,pmnd->pnkm", q, k) / math.sqrt(self.head_dim)  # [P, nh, K, 1 + M]
        logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a query with no memory reads nothing
        context = torch.einsum("pnkm,pmnd->pknd", self.dropout(weights), v).flatten(-2)  # [P, K, H]
        out = self.norm1(base + self.dropout(self.out(context)))  # [P, K, H]
        out = self.norm2(out + self.dropout(self.ffn(out)))
        return (out, weights.mean(dim=1)) if return_attention else out

    @staticmethod
    def proxy_similarities(proxies: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``cos(proxy_k, item)`` for every proxy: ``[P, K, H] x [N, H] -> [P, K, N]``."""
        return torch.einsum("pkh,nh->pkn", F.normalize(proxies, dim=-1), F.normalize(items, dim=-1))

    def score(self, proxies: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Pooled ``cos(proxy_k, item) / temperature``: ``[P, K, H] x [N, H] -> [P, N]``."""
        return self.pool(F.normalize(proxies, dim=-1), F.normalize(items, dim=-1), self.temperature)
