"""The preference retriever: learnable proxy queries over a causal user memory.

Memory of a user at position ``t`` = [preference vector; knowledge vectors
of the items at positions ``0..t``] (plus their image vectors with images as
a second modality). ``K`` proxy queries cross-attend over
it; the retriever score of item ``i`` is
``max_k cos(proxy_k, item_i) / temperature``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PreferenceRetriever(nn.Module):
    """Proxy cross-attention over [preference; history knowledge], scored by max cosine."""

    def __init__(self, text_dim: int, hidden: int, n_proxies: int, n_heads: int,
                 dropout: float, temperature: float, layer_norm_eps: float) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by retriever_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, hidden // n_heads
        self.temperature = temperature
        # knowledge -> item representation (shared by memory and candidates)
        self.item_adapter = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        # preference text -> one memory slot
        self.user_adapter = nn.Linear(text_dim, hidden)
        # items without a knowledge text are represented through their ID embedding
        self.id_adapter = nn.Linear(hidden, hidden)
        self.proxies = nn.Parameter(torch.empty(n_proxies, hidden))
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.norm1 = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def item_representations(self, item_text: torch.Tensor, item_text_mask: torch.Tensor,
                             id_embeddings: torch.Tensor) -> torch.Tensor:
        """Adapted knowledge per item, ID-based for items without text. ``[N, H]``"""
        from_text = self.item_adapter(item_text)  # [N, H]
        from_id = self.id_adapter(id_embeddings)  # [N, H]
        return torch.where(item_text_mask[:, None], from_text, from_id)

    @staticmethod
    def memory(user_vec: torch.Tensor, user_valid: torch.Tensor,
               histories: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        """Memory slots [preference; each history block], their validity and history index.

        user_vec ``[B, H]``, user_valid ``[B]``; each history block is
        (representations ``[B, L, H]``, valid ``[B, L]``), e.g. knowledge
        vectors, then image vectors. Returns memory ``[B, M, H]``, valid
        ``[B, M]`` and slot_position ``[M]`` (-1 for the preference slot,
        which every position sees).
        """
        length = histories[0][0].shape[1]
        index = torch.arange(length, device=user_vec.device)
        memory = torch.cat([user_vec[:, None], *(h for h, _ in histories)], dim=1)  # [B, M, H]
        valid = torch.cat([user_valid[:, None], *(v for _, v in histories)], dim=1)  # [B, M]
        slot_position = torch.cat([index[:1] - 1, *(index for _ in histories)])  # [M]
        return memory, valid, slot_position

    def proxy_states(self, memory: torch.Tensor, valid: torch.Tensor, slot_position: torch.Tensor,
                     positions: torch.Tensor, return_attention: bool = False):
        """Proxy outputs for each query position.

        memory ``[B, M, H]``, valid ``[B, M]``, slot_position ``[M]`` (see
        :meth:`memory`), positions ``[B, T]`` (the last history index each
        query may see). Returns ``[B, T, K, H]``; with ``return_attention``
        also each proxy's attention over the slots averaged over heads
        ``[B, T, K, M]`` (a distribution over the slots it may see; what
        explanations show).
        """
        batch, slots, _ = memory.shape
        causal = slot_position[None, None, :] <= positions[:, :, None]  # [B, T, M]
        mask = causal & valid[:, None, :]  # [B, T, M]

        k = self.key(memory).view(batch, slots, self.n_heads, self.head_dim)  # [B, M, nh, d]
        v = self.value(memory).view(batch, slots, self.n_heads, self.head_dim)  # [B, M, nh, d]
        q = self.query(self.proxies).view(-1, self.n_heads, self.head_dim)  # [K, nh, d]
        logits = torch.einsum("knd,bmnd->bnkm", q, k) / math.sqrt(self.head_dim)  # [B, nh, K, M]
        logits = logits[:, None].masked_fill(~mask[:, :, None, None, :], float("-inf"))  # [B, T, nh, K, M]
        weights = torch.softmax(logits, dim=-1)
        attn = self.dropout(weights)
        context = torch.einsum("btnkm,bmnd->btknd", attn, v).flatten(-2)  # [B, T, K, H]
        states = self.norm1(self.proxies + self.dropout(self.out(context)))  # [B, T, K, H]
        states = self.norm2(states + self.dropout(self.ffn(states)))
        return (states, weights.mean(dim=2)) if return_attention else states

    @staticmethod
    def proxy_similarities(proxies: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``cos(proxy_k, item)`` for every proxy: ``[P, K, H] x [N, H] -> [P, K, N]``."""
        return torch.einsum("pkh,nh->pkn", F.normalize(proxies, dim=-1), F.normalize(items, dim=-1))

    def score(self, proxies: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``max_k cos(proxy_k, item) / temperature``: ``[P, K, H] x [N, H] -> [P, N]``."""
        return self.proxy_similarities(proxies, items).amax(dim=1) / self.temperature
