"""The preference retriever: proxy queries over a causal user memory, scored against item texts.

Memory of a user at position ``t`` = [the newest preference profile written
from items ``0..t`` (``texts/profiles.py``); the knowledge vectors of the items
at positions ``0..t``] (plus their image vectors with images as a second
modality). ``K`` proxy queries cross-attend over it and the retriever score of
item ``i`` pools ``cos(proxy_k, item_i) / temperature`` over the proxies.

Each design choice is a registry entry chosen in the config
(docs/results/retriever.md): ``item_adapter`` (how a knowledge vector becomes an item
representation: ``mlp``, ``linear``, ``lowrank``, ``frozen``),
``retriever_query`` (``proxies``: K learned queries; ``state``: the same
queries shifted by the sequence state at the position) and ``proxy_pooling``
(``max``, ``logsumexp``, ``mean``).

``retriever_scoring`` says how the memory becomes an item's score.
``proxies``: the proxies read a softmax-weighted mix of the slots through a
transformer block and the item is matched against that mix. ``slots``
(late interaction): the item is matched against every slot and the matches
are pooled by the attention, ``r_i = log sum_s exp(a_s + beta * cos(slot_s,
item_i))`` with ``a_s`` the proxies' attention logit of slot ``s`` (plus a
learned recency bias) and ``beta`` a learned sharpness. Then the item's
attention ``w_s|i = softmax_s(a_s + beta * cos)`` is exactly the share of the
score each slot carries, and taking slot ``s`` out of the memory lowers the
score by exactly ``-log(1 - w_s|i)``: the most attended slot is always the
one whose removal costs most, so explanations that name it are faithful by
construction.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def take_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for an integer ``index`` into the first dimension, with the same values and gradient;
    its backward is an embedding backward, which on the CPU is several times faster than the serial
    accumulating ``index_put_`` behind ``table[index]``. ``[*index.shape, *table.shape[1:]]``"""
    return F.embedding(index, table.reshape(len(table), -1)).view(*index.shape, *table.shape[1:])


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
RETRIEVER_SCORINGS = ("proxies", "slots")


class SlotRead(NamedTuple):
    """What late-interaction scoring (``retriever_scoring: slots``) reads for ``P`` queries over ``1 + M`` slots."""

    logits: torch.Tensor  # [P, K, 1 + M] each proxy's attention logit of each slot plus its recency bias
    mask: torch.Tensor  # [P, 1 + M] slots the query may read (logits elsewhere are finite but unused)
    slot_rows: torch.Tensor  # [P, M] the row of each history slot's item in the item views
    profile: torch.Tensor  # [P, H] the adapted preference slot (slot 0)
    sharpness: torch.Tensor  # [] beta: the slot-item cosine's weight in the score

    @property
    def slot_logits(self) -> torch.Tensor:
        """``a_s``: the proxies' logits of each slot pooled (``logsumexp_k - log K``), -inf where masked.
        ``[P, 1 + M]``"""
        pooled = torch.logsumexp(self.logits, dim=1) - math.log(self.logits.shape[1])
        return pooled.masked_fill(~self.mask, float("-inf"))


class SlotBlock(NamedTuple):
    """One modality block of the memory for late-interaction scoring."""

    slots: torch.Tensor  # [n, H] the item views the block's slot rows index
    candidates: torch.Tensor  # [C, H] the candidates' view of the same modality
    candidate_valid: torch.Tensor | None  # [C] candidates that have this modality (None: all)


class _SlotKernelSum(torch.autograd.Function):
    """``out[p, c] = sum_m weights[p, m] * kernel[rows[p, m], c]`` without building ``[P, M, C]``.

    Forward and the kernel's gradient are sparse products (``P x M``
    non-zeros); the weights' gradient is ``grad @ kernel.T`` computed only at
    the slots' rows (a sampled product: much cheaper on CPU than the dense
    ``[P, U]`` product or gathering the kernel rows slot by slot).
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, rows: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        matrix = _sparse_rows(weights, rows, kernel.shape[0])  # [P, U] sparse, built once for both passes
        ctx.save_for_backward(rows, kernel)
        ctx.matrix = matrix
        return torch.sparse.mm(matrix, kernel)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rows, kernel = ctx.saved_tensors
        d_weights = d_kernel = None
        if ctx.needs_input_grad[0]:
            d_weights = _sampled_product(grad, kernel, rows, ctx.matrix)  # [P, M]
        if ctx.needs_input_grad[2]:
            d_kernel = torch.sparse.mm(ctx.matrix.t(), grad)
        return d_weights, None, d_kernel


def _sampled_product(grad: torch.Tensor, kernel: torch.Tensor, rows: torch.Tensor,
                     pattern: torch.Tensor) -> torch.Tensor:
    """``(grad @ kernel.T)[p, rows[p, m]]`` ``[P, M]`` without the rest of the ``[P, U]`` product
    (``pattern``: the coalesced sparse ``[P, U]`` matrix of the rows; only its non-zero pattern is read)."""
    width = kernel.shape[0]
    keys = pattern.indices()[0] * width + pattern.indices()[1]  # sorted: the pattern is coalesced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        values = torch.sparse.sampled_addmm(pattern.to_sparse_csr(), grad, kernel.T, beta=0.0).values()
    where = torch.arange(len(rows), device=rows.device)[:, None] * width + rows  # [P, M]
    return values[torch.searchsorted(keys, where)]


def _sparse_rows(weights: torch.Tensor, rows: torch.Tensor, width: int) -> torch.Tensor:
    """``[P, M]`` weights at columns ``rows`` as a sparse ``[P, width]`` matrix (repeated columns add up)."""
    query = torch.arange(len(rows), device=rows.device)[:, None].expand_as(rows)
    indices = torch.stack([query.reshape(-1), rows.reshape(-1)])
    return torch.sparse_coo_tensor(indices, weights.reshape(-1), (len(rows), width),
                                   check_invariants=False).coalesce()


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
        # late interaction (retriever_scoring: slots): a recency bias per distance from the query's position
        # (index 0: the preference slot), and the cosine's weight beta, starting at 1 / temperature
        self.scoring = config["retriever_scoring"]
        if self.scoring == "slots":  # (only then, so checkpoints of the proxies design load as they were saved)
            self.recency = nn.Parameter(torch.zeros(config["MAX_ITEM_LIST_LENGTH"] + 1))
            self.log_sharpness = nn.Parameter(torch.tensor(-math.log(self.temperature)))

    def item_representations(self, item_text: torch.Tensor, item_text_mask: torch.Tensor,
                             id_embeddings: torch.Tensor) -> torch.Tensor:
        """Adapted knowledge per item, ID-based for items without text. ``[N, H]``"""
        from_text = self.item_adapter(item_text)  # [N, H]
        missing = (~item_text_mask).nonzero().squeeze(1)  # [m] (row 0, the padding, at least): the ID adapter
        from_id = self.id_adapter(id_embeddings.index_select(0, missing))  # runs on these rows only  [m, H]
        return from_text.index_put((missing,), from_id)

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

    def _attention_logits(self, memory: torch.Tensor, valid: torch.Tensor, slot_position: torch.Tensor,
                          rows: torch.Tensor, positions: torch.Tensor, profile: torch.Tensor,
                          profile_valid: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Masked attention logits of every proxy and head over [preference; memory] ``[P, nh, K, 1 + M]``,
        with the query bases ``[P, K, H]`` (arguments: :meth:`proxy_states`)."""
        batch, slots, _ = memory.shape
        mask = (slot_position[None, :] <= positions[:, None]) & valid[rows]  # [P, M]
        mask = torch.cat([profile_valid[:, None], mask], dim=-1)  # [P, 1 + M]
        k = take_rows(self.key(memory).view(batch, slots, self.n_heads, self.head_dim), rows)  # [P, M, nh, d]
        k = torch.cat([self.key(profile).view(-1, 1, self.n_heads, self.head_dim), k], dim=1)  # [P, 1 + M, nh, d]
        base = self.proxies.expand(len(rows), -1, -1)  # [P, K, H]
        if self.state_query is not None:
            base = base + self.state_query(states)[:, None]  # queries conditioned on the sequence state
        q = self.query(base).view(*base.shape[:2], self.n_heads, self.head_dim)  # [P, K, nh, d]
        logits = torch.einsum("pknd,pmnd->pnkm", q, k) / math.sqrt(self.head_dim)  # [P, nh, K, 1 + M]
        return logits.masked_fill(~mask[:, None, None, :], float("-inf")), base

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
        logits, base = self._attention_logits(memory, valid, slot_position, rows, positions, profile,
                                              profile_valid, states)
        v = take_rows(self.value(memory).view(*memory.shape[:2], self.n_heads, self.head_dim), rows)  # [P, M, nh, d]
        v = torch.cat([self.value(profile).view(-1, 1, self.n_heads, self.head_dim), v], dim=1)  # [P, 1 + M, nh, d]
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a query with no memory reads nothing
        context = torch.einsum("pnkm,pmnd->pknd", self.dropout(weights), v).flatten(-2)  # [P, K, H]
        out = self.norm1(base + self.dropout(self.out(context)))  # [P, K, H]
        out = self.norm2(out + self.dropout(self.ffn(out)))
        return (out, weights.mean(dim=1)) if return_attention else out

    # -- late interaction (retriever_scoring: slots) ---------------------------------------------------------
    def slot_read(self, memory: torch.Tensor, valid: torch.Tensor, slot_position: torch.Tensor, rows: torch.Tensor,
                  positions: torch.Tensor, profile: torch.Tensor, profile_valid: torch.Tensor, states: torch.Tensor,
                  slot_rows: torch.Tensor) -> SlotRead:
        """The attention logits of late-interaction scoring (arguments: :meth:`proxy_states`; ``slot_rows``
        ``[B, M]``: each history slot's row in the item views).

        A slot's logit is its proxies' attention logit (heads averaged) plus
        a learned bias for its distance from the query's position (the
        preference slot has its own), so recency is learned, not assumed.
        """
        logits = self._attention_logits(memory, valid, slot_position, rows, positions, profile, profile_valid,
                                        states)[0].mean(dim=1)  # [P, K, 1 + M], -inf where masked
        mask = torch.isfinite(logits[:, 0])  # [P, 1 + M]
        logits = logits.masked_fill(~mask[:, None], 0.0)  # finite, so no NaN gradient reaches the masked slots
        distance = (positions[:, None] - slot_position[None, :]).clamp(min=0) + 1  # [P, M]
        bias = torch.cat([self.recency[:1].expand(len(rows), 1), self.recency[distance.clamp(max=len(self.recency) - 1)]],
                         dim=1)  # [P, 1 + M]
        sharpness = self.log_sharpness.exp().clamp(max=50.0)
        return SlotRead(logits + bias[:, None, :], mask, slot_rows[rows], profile, sharpness)

    @staticmethod
    def slot_scores(read: SlotRead, blocks: Sequence[SlotBlock], chunk_entries: int = 1 << 25) -> torch.Tensor:
        """``log sum_s exp(a_s + beta cos(slot_s, item))`` for each query and candidate: ``[P, C]``.

        ``blocks``: the memory's modality blocks in order (text slots, then
        image slots), each matched with the candidates' view of the same
        modality; the preference slot is matched with the first block's.
        Works through each block's history-item kernel ``exp(beta (cos - 1))``
        ``[U, C]`` (U: distinct history items of the batch), built for at
        most ``chunk_entries`` (U x candidates) at a time, so memory stays
        bounded for any catalogue, and summed per query by a sparse product
        (``P x M x C``; never ``P x M x C x H``). A query with an empty memory
        scores 0.
        """
        beta = read.sharpness
        logits = read.slot_logits.float()  # [P, 1 + M]
        top = logits.amax(dim=1, keepdim=True)  # [P, 1]
        some = torch.isfinite(top)
        weights = torch.exp(logits - top.masked_fill(~some, 0.0)) * read.mask  # [P, 1 + M] in [0, 1]; masked 0
        width = read.slot_rows.shape[1] // len(blocks)  # history slots per block
        profile = F.normalize(read.profile.float(), dim=-1)  # [P, H]
        history = []  # per block: the weights of its slots [P, L], their rows among its items [P, L], items [U, H]
        for b, block in enumerate(blocks):
            used, inverse = torch.unique(read.slot_rows[:, b * width: (b + 1) * width], return_inverse=True)
            history.append((weights[:, 1 + b * width: 1 + (b + 1) * width].contiguous(), inverse,
                            F.normalize(take_rows(block.slots, used).float(), dim=-1)))
        step = max(1, chunk_entries // max(1, max(len(items) for _, _, items in history)))
        totals = []
        for start in range(0, len(blocks[0].candidates), step):
            part = slice(start, start + step)
            units = [F.normalize(block.candidates[part].float(), dim=-1) for block in blocks]  # [c, H] each
            total = weights[:, :1] * torch.exp(beta * (profile @ units[0].T - 1.0))  # [P, c] the preference slot
            for block, unit, (slot_weights, inverse, items) in zip(blocks, units, history):
                kernel = torch.exp(beta * (items @ unit.T - 1.0))  # [U, c]
                if block.candidate_valid is not None:  # a candidate without this modality matches none of its slots
                    kernel = kernel * block.candidate_valid[part][None, :]
                total = total + _SlotKernelSum.apply(slot_weights, inverse, kernel)  # [P, c]
            totals.append(total)
        total = torch.cat(totals, dim=1)  # [P, C]
        score = top.masked_fill(~some, 0.0) + beta + torch.log(total.clamp_min(1e-30))
        return torch.where(some, score, torch.zeros_like(score))

    @staticmethod
    def slot_scores_at(read: SlotRead, blocks: Sequence[SlotBlock], columns: torch.Tensor) -> torch.Tensor:
        """:meth:`slot_scores` of each query's own candidates: ``columns`` ``[P, C']`` index the blocks'
        candidates (the union of the lists); ``[P, C']``. Each history item is matched with the union once
        (``[U, C]``) and each query gathers only its own slots x candidates (``P x M x C'``), so a short list costs
        little whatever the catalogue (the rerank stage, ``two_stage: True``)."""
        beta = read.sharpness
        logits = read.slot_logits.float()  # [P, 1 + M]
        top = logits.amax(dim=1, keepdim=True)  # [P, 1]
        some = torch.isfinite(top)
        weights = torch.exp(logits - top.masked_fill(~some, 0.0)) * read.mask  # [P, 1 + M]
        width = read.slot_rows.shape[1] // len(blocks)
        units = [F.normalize(block.candidates.float(), dim=-1) for block in blocks]  # [C, H] each
        profile = F.normalize(read.profile.float(), dim=-1)  # [P, H]
        total = weights[:, :1] * torch.exp(beta * (torch.einsum("ph,pch->pc", profile, take_rows(units[0], columns))
                                                    - 1.0))  # [P, C'] the preference slot
        for b, (block, unit) in enumerate(zip(blocks, units)):
            slot_rows = read.slot_rows[:, b * width: (b + 1) * width]  # [P, L]
            used, inverse = torch.unique(slot_rows, return_inverse=True)
            if len(used) * len(unit) <= slot_rows.numel() * columns.shape[1]:
                # few distinct history items (training windows share them): each matched with the union once
                kernel = torch.exp(beta * (F.normalize(take_rows(block.slots, used).float(), dim=-1) @ unit.T - 1.0))
                if block.candidate_valid is not None:
                    kernel = kernel * block.candidate_valid[None, :]  # [U, C]
                flat = inverse[:, :, None] * kernel.shape[1] + columns[:, None, :]  # [P, L, C'] kernel entries
                picked = take_rows(kernel.reshape(-1), flat)  # [P, L, C'] (an embedding lookup: a fast backward)
            else:  # many distinct histories (a batch of served users): each query's slots x its own candidates
                slots = F.normalize(take_rows(block.slots, slot_rows).float(), dim=-1)  # [P, L, H]
                picked = torch.exp(beta * (slots @ take_rows(unit, columns).transpose(1, 2) - 1.0))  # [P, L, C']
                if block.candidate_valid is not None:
                    picked = picked * block.candidate_valid[columns][:, None, :]
            total = total + torch.einsum("pl,plc->pc", weights[:, 1 + b * width: 1 + (b + 1) * width], picked)
        score = top.masked_fill(~some, 0.0) + beta + torch.log(total.clamp_min(1e-30))
        return torch.where(some, score, torch.zeros_like(score))

    @staticmethod
    def slot_reasons(read: SlotRead, memory: torch.Tensor, items: Sequence[tuple[torch.Tensor, torch.Tensor | None]]
                     ) -> tuple[torch.Tensor, ...]:
        """Why late interaction scored the asked items as it did.

        ``memory`` ``[B, M, H]``: the history slots, block after block;
        ``items``: per block the items' view ``[B, k, H]`` and which have it
        ``[B, k]`` (None: all). Returns each proxy's attention over the slots
        ``[B, K, 1 + M]`` (softmax of its logits), each item's attention
        ``[B, k, 1 + M]`` (``softmax_s(a_s + beta cos)``: each slot's exact
        share of the score), each proxy's part of the score ``[B, K, k]``
        (their logsumexp minus log K is the score) and the score ``[B, k]``.
        """
        unit = lambda x: F.normalize(x, dim=-1)  # noqa: E731
        width = memory.shape[1] // len(items)
        cos = [torch.einsum("bh,bjh->bj", unit(read.profile), unit(items[0][0]))[:, None]]  # [B, 1, k]
        for b, (view, has) in enumerate(items):
            block = torch.einsum("bmh,bjh->bmj", unit(memory[:, b * width: (b + 1) * width]), unit(view))
            cos.append(block if has is None else block.masked_fill(~has[:, None, :], float("-inf")))
        cos = torch.cat(cos, dim=1)  # [B, 1 + M, k]
        logits = read.logits.masked_fill(~read.mask[:, None], float("-inf"))  # [B, K, 1 + M]
        joint = logits[..., None] + read.sharpness * cos[:, None]  # [B, K, 1 + M, k]
        per_proxy = torch.logsumexp(joint, dim=2)  # [B, K, k]
        score = torch.logsumexp(per_proxy, dim=1) - math.log(read.logits.shape[1])  # [B, k]
        item_attention = torch.softmax(torch.logsumexp(joint, dim=1), dim=1).transpose(1, 2)  # [B, k, 1 + M]
        attention = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # [B, K, 1 + M]
        empty = ~torch.isfinite(score)
        return (attention, item_attention.nan_to_num(0.0), per_proxy.masked_fill(empty[:, None], 0.0),
                score.masked_fill(empty, 0.0))

    @staticmethod
    def proxy_similarities(proxies: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``cos(proxy_k, item)`` for every proxy: ``[P, K, H] x [N, H] -> [P, K, N]``."""
        return torch.einsum("pkh,nh->pkn", F.normalize(proxies, dim=-1), F.normalize(items, dim=-1))

    def score(self, proxies: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Pooled ``cos(proxy_k, item) / temperature``: ``[P, K, H] x [N, H] -> [P, N]``."""
        return self.pool(F.normalize(proxies, dim=-1), F.normalize(items, dim=-1), self.temperature)
