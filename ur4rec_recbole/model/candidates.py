"""The first of UR4Rec's two stages: candidate lists per query from several sources (``two_stage: True``).

The paper's UR4Rec is a reranker: a first stage proposes candidates and the
retrieved preferences rerank them. Each query (a training position, a test
user, a served request) gets ``candidate_count`` (M) distinct items, merged in
this order and deduplicated (the first occurrence counts):

1. ``backbone``: the sequence model's top ``M x candidate_backbone_share`` by
   ``h_t . e_i`` (exact: one matrix product and top-k, chunked over the
   catalogue so memory stays bounded; :class:`BackboneIndex` with faiss for
   catalogues of ``candidate_ann_items`` items or more, where the product alone
   costs more than a served request may take);
2. ``text``: knowledge-vector neighbours of the last ``candidate_text_window``
   history items, newest item first, nearest neighbours first, up to
   ``M x candidate_text_share`` new items; the only source that reaches items
   without interactions (cold items), since it reads texts alone;
3. ``transitions``: the items that most often followed the last item in the
   training portions (the ``Transitions`` baseline), up to
   ``M x candidate_transition_share`` new items;
4. the backbone's next ranks fill the list up to M.

The lists are a pure function of (backbone scores, recent history items), so
training and serving build the same list for the same input (tested). The
text neighbour table is computed per item on first use and cached (exact,
chunked), so a million-item catalogue pays only for the items that occur in
histories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

SOURCES = ("backbone", "text", "transitions", "fill")  # merge order; ``fill``: the backbone's next ranks


class CandidateLists(NamedTuple):
    """Candidates of ``B`` queries: ``items`` ``[B, M]`` (distinct per row) and the source that gave each ``[B, M]``
    (an index into :data:`SOURCES`)."""

    items: torch.Tensor  # [B, M] item ids
    source: torch.Tensor  # [B, M] int: SOURCES index


@dataclass(frozen=True)
class CandidateSettings:
    """How many candidates each source gives (from the config; see UR4Rec.yaml)."""

    count: int  # M
    backbone: int  # the backbone's top ranks always kept
    text: int  # at most this many new items from text neighbours
    transitions: int  # at most this many new items from transitions
    text_window: int  # history items whose text neighbours are read

    @classmethod
    def from_config(cls, config: Mapping) -> "CandidateSettings":
        count = int(config["candidate_count"])
        share = lambda key: int(round(count * float(config[key])))  # noqa: E731
        return cls(count, min(count, max(1, share("candidate_backbone_share"))), share("candidate_text_share"),
                   share("candidate_transition_share"), int(config["candidate_text_window"]))


def exact_top(state: torch.Tensor, table: torch.Tensor, k: int, chunk_items: int = 1 << 16
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``state @ table.T`` ``([B, k] values, [B, k] item ids)``, the catalogue in chunks of
    ``chunk_items`` rows, so memory is ``B x (k + chunk_items)`` for any catalogue. Item 0 (padding) is never
    returned."""
    best_v = state.new_full((len(state), 0), float("-inf"))
    best_i = torch.zeros(len(state), 0, dtype=torch.long, device=state.device)
    for start in range(0, len(table), chunk_items):
        scores = state @ table[start: start + chunk_items].T  # [B, c]
        if start == 0:
            scores[:, 0] = float("-inf")
        values = torch.cat([best_v, scores], dim=1)
        ids = torch.cat([best_i, torch.arange(start, start + scores.shape[1], device=state.device)
                         .expand(len(state), -1)], dim=1)
        best_v, where = values.topk(min(k, values.shape[1]), dim=1)
        best_i = ids.gather(1, where)
    return best_v, best_i


class BackboneIndex:
    """The backbone source over a large catalogue: faiss HNSW on inner product (approximate), or exact top-k.

    Why HNSW: an exact product over a million 64-d rows reads 256 MB per
    query (tens of ms on a laptop core); an inverted file needs clustered
    vectors to skip most of them, which freshly initialised (random) item
    tables are not; a graph needs no clusters (its recall is measured by
    benchmarks/serving_scale.py, docs/guides/two-stage.md). Built once per
    weights (the item table changes only in training).
    """

    def __init__(self, table: torch.Tensor, method: str = "faiss", neighbours: int = 32, ef_search: int = 256,
                 ef_construction: int = 80) -> None:
        self.table = table.detach().float().contiguous()  # [N, H]
        self.method = method
        if method == "faiss":
            import faiss  # optional extra [scale]: pip install faiss-cpu

            index = faiss.IndexHNSWFlat(self.table.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.add(self.table[1:].cpu().numpy())  # item 0 is padding
            index.hnsw.efSearch = ef_search
            self.index = index

    def top(self, state: torch.Tensor, k: int) -> torch.Tensor:
        """The ``k`` best items for each state ``[B, H]``: ``[B, k]`` ids (best first)."""
        if self.method != "faiss":
            return exact_top(state, self.table, k)[1]
        _, ids = self.index.search(state.detach().float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(ids + 1).clamp(min=0)  # -1 (not found) -> 0, padding


PRECOMPUTE_ITEMS = 50_000  # catalogues up to this size get their whole text neighbour table when built


class TextNeighbours:
    """Each item's ``k`` nearest items by knowledge-vector cosine (itself excluded; 0 pads), computed for an item
    the first time it is asked for and cached. Items without a knowledge vector have no neighbours and are no
    one's neighbour."""

    def __init__(self, item_text: torch.Tensor, item_mask: torch.Tensor, k: int, chunk_items: int = 1 << 16) -> None:
        self.unit = F.normalize(item_text.float(), dim=1) * item_mask[:, None]  # [N, D]; 0 rows without text
        self.mask = item_mask.bool()
        self.k, self.chunk_items = k, chunk_items
        self.table = torch.zeros(len(item_text), k, dtype=torch.long)  # [N, k]
        self.known = torch.zeros(len(item_text), dtype=torch.bool)  # [N] rows of ``table`` computed
        self.complete = False  # every row computed: ``of`` is one lookup
        if len(item_text) <= PRECOMPUTE_ITEMS:  # a small catalogue: the whole table now (N x N x D in chunks)
            self.of(torch.arange(len(item_text)))
            self.complete = True

    def of(self, items: torch.Tensor) -> torch.Tensor:
        """Neighbours of ``items`` (any shape ``S``): ``[*S, k]``, nearest first."""
        if self.complete:
            return self.table[items.cpu()].to(items.device)
        flat = items.reshape(-1).cpu()
        todo = flat[~self.known[flat]].unique()
        todo = todo[self.mask[todo]]
        for start in range(0, len(todo), 1024):  # queries in chunks too: memory 1024 x chunk_items
            self.table[todo[start: start + 1024]] = self._compute(todo[start: start + 1024])
        self.known[flat] = True
        return self.table[flat].to(items.device).view(*items.shape, self.k)

    def _compute(self, items: torch.Tensor) -> torch.Tensor:
        query = self.unit[items]  # [n, D]
        ids_k = min(self.k + 1, len(self.unit))
        best_v, best_i = exact_top(query, self.unit, ids_k, self.chunk_items)
        best_v = best_v.masked_fill(best_i == items[:, None], float("-inf"))  # not itself
        best_v = best_v.masked_fill(~self.mask[best_i], float("-inf"))
        order = best_v.argsort(dim=1, descending=True)[:, : self.k]
        out = best_i.gather(1, order).masked_fill(~torch.isfinite(best_v.gather(1, order)), 0)
        if out.shape[1] < self.k:
            out = F.pad(out, (0, self.k - out.shape[1]))
        return out


def successor_table(portions: Mapping[int, np.ndarray], n_items: int, k: int) -> torch.Tensor:
    """The ``k`` items that most often follow each item in the training portions (ties: lower id), 0 pads.
    ``[N, k]``"""
    from ur4rec_recbole.model.baselines import transition_table

    table = torch.zeros(n_items, k, dtype=torch.long)
    if not portions or k == 0:
        return table
    pairs, counts = transition_table(dict(portions), n_items)  # [2, P], [P]
    order = np.lexsort((pairs[1].numpy(), -counts.numpy(), pairs[0].numpy()))  # by source, count desc, target
    src, dst = pairs[0].numpy()[order], pairs[1].numpy()[order]
    starts = np.searchsorted(src, src, side="left")
    rank = np.arange(len(src)) - starts  # rank of each pair within its source
    keep = rank < k
    table[torch.from_numpy(src[keep]), torch.from_numpy(rank[keep])] = torch.from_numpy(dst[keep])
    return table


def recent_items(item_seq: torch.Tensor, last: torch.Tensor, window: int) -> torch.Tensor:
    """The items at positions ``last, last - 1, ...`` of each row (newest first), 0 before the start. ``[B, W]``
    (``last`` ``[B]``: the index of each query's newest item.)"""
    positions = last[:, None] - torch.arange(window, device=item_seq.device)  # [B, W]
    return item_seq.gather(1, positions.clamp(min=0)).masked_fill(positions < 0, 0)


class CandidateStage:
    """Builds :class:`CandidateLists` from the backbone's ranking and the recent history (module docstring)."""

    def __init__(self, settings: CandidateSettings, item_text: torch.Tensor, item_mask: torch.Tensor,
                 portions: Mapping[int, np.ndarray] | None, n_items: int) -> None:
        self.settings = settings
        self.text = TextNeighbours(item_text, item_mask, max(1, settings.text))
        self.successors = successor_table(portions or {}, n_items, settings.transitions)  # [N, k_t]
        self.n_items = n_items

    @property
    def backbone_depth(self) -> int:
        """How many of the backbone's ranks the merge may read (enough to fill M after any overlap)."""
        s = self.settings
        return min(self.n_items - 1, s.count + s.text + s.transitions)

    def lists(self, backbone: torch.Tensor, recent: torch.Tensor) -> CandidateLists:
        """Candidates of each query from its backbone ranking ``backbone`` ``[B, >= backbone_depth]`` (item ids,
        best first) and its recent items ``recent`` ``[B, W]`` (newest first, 0 pads)."""
        s, device = self.settings, backbone.device
        depth = self.backbone_depth
        backbone = backbone[:, :depth]
        parts = [backbone[:, : s.backbone]]
        quotas = [s.backbone]
        if s.text:
            window = recent[:, : s.text_window]  # [B, W]
            near = self.text.of(window).to(device)  # [B, W, k] nearest first
            parts.append(near.transpose(1, 2).reshape(len(recent), -1))  # rank 1 of every recent item, then rank 2
            quotas.append(s.text)
        if s.transitions:
            last = recent[:, 0]
            parts.append(self.successors[last.cpu()].to(device))  # [B, k_t] (the tables stay on the CPU)
            quotas.append(s.transitions)
        parts.append(backbone[:, s.backbone:])
        quotas.append(s.count)
        names = [0] + ([1] if s.text else []) + ([2] if s.transitions else []) + [3]
        return merge(parts, quotas, names, s.count)


BITMAP_ENTRIES = 1 << 26  # merge: per-row seen-sets as bitmaps up to this many (batch x catalogue) entries


def merge(parts: list[torch.Tensor], quotas: list[int], names: list[int], count: int) -> CandidateLists:
    """Deduplicated union of the ``parts`` ``[B, n_j]`` in order: at most ``quotas[j]`` new items from part ``j``,
    ``count`` in all (the last part must be long enough to fill); ``names``: each part's index in
    :data:`SOURCES` (only the text part may hold an item twice). Item 0 is never a candidate.

    Part by part, an entry is new when it matches no item kept so far and no earlier entry of its part: per-row
    bitmaps over the catalogue while ``B x N`` is small (training), else comparisons ``[B, n_j, kept]`` (a few
    served users over a large catalogue). Both give the same lists (tested)."""
    batch = len(parts[0])
    width = 1 + max(int(p.max()) if p.numel() else 0 for p in parts)  # item ids 0..width-1 occur
    bitmap = batch * width <= BITMAP_ENTRIES  # seen-sets as [B, width] bits; else comparisons with the kept items
    seen = torch.zeros(batch, width if bitmap else 0, dtype=torch.bool, device=parts[0].device)
    kept = parts[0].new_zeros(batch, 0, dtype=torch.int)  # [B, t] items kept so far, 0 elsewhere
    source = parts[0].new_zeros(batch, 0, dtype=torch.int)
    for part, quota, name in zip(parts, quotas, names):
        columns = torch.arange(part.shape[1], device=part.device)
        new = part > 0
        if name == SOURCES.index("text"):  # the one part that repeats itself: neighbours of several items
            if bitmap:  # the first column of each item in the row
                first = torch.full((batch, width), part.shape[1], dtype=torch.long, device=part.device)
                first.scatter_reduce_(1, part, columns.expand_as(part), "amin")
                new &= first.gather(1, part) == columns
            else:
                earlier = columns[None, :] < columns[:, None]  # [n, n]
                new &= ~((part[:, :, None] == part[:, None, :]) & earlier).any(-1)  # [B, n] no earlier entry has it
        if kept.shape[1]:
            new &= ~(seen.gather(1, part) if bitmap else (part.int()[:, :, None] == kept[:, None, :]).any(-1))
        order = new.cumsum(1)
        take = new & (order <= quota) & (order + (kept > 0).sum(1, keepdim=True) <= count)
        kept = torch.cat([kept, part.masked_fill(~take, 0).int()], dim=1)
        if bitmap:
            seen.scatter_(1, part.masked_fill(~take, 0), True)  # (item 0 too: it is never new anyway)
        source = torch.cat([source, torch.full_like(part, name)], dim=1)
    keep = kept > 0  # [B, T]
    rank = keep.long().cumsum(1) - 1  # column of each kept entry
    out = kept.new_zeros(len(kept), count, dtype=torch.long)
    out_source = kept.new_zeros(len(kept), count, dtype=torch.long)
    rows = torch.arange(len(kept), device=kept.device)[:, None].expand_as(kept)
    out[rows[keep], rank[keep]] = kept[keep].long()
    out_source[rows[keep], rank[keep]] = source[keep].long()
    return CandidateLists(out, out_source)


def two_stage_ranks(state: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, lists: torch.Tensor,
                    fused: torch.Tensor, excluded: torch.Tensor | None = None, chunk_items: int = 1 << 16
                    ) -> torch.Tensor:
    """1-based rank of each target ``[B]`` in the two-stage order, the catalogue read in chunks (bounded memory
    at any size): the candidates ``lists`` ``[B, M]`` by their fused scores ``fused`` ``[B, M]`` first, then every
    other item by the backbone score ``state @ table.T``. Ties count in the target's favour; item 0 and the
    ``excluded`` items ``[B, L]`` (the history, under exclude_history) are not ranked. Equals the rank in
    ``UR4Rec.full_sort_predict``'s scores without building them (tested)."""
    drop = lists.new_zeros(lists.shape[0], 0) if excluded is None else excluded
    in_list = lists == targets[:, None]  # [B, M]
    listed = in_list.any(1)  # [B]
    valid = (lists > 0) & ~(lists[:, :, None] == drop[:, None, :]).any(-1)  # [B, M] ranked candidates
    target_fused = fused.masked_fill(~in_list, 0.0).sum(1, keepdim=True)  # [B, 1]
    rank_in_list = 1 + ((fused > target_fused) & valid).sum(1)  # [B]
    target_seq = (state * table[targets]).sum(1, keepdim=True)  # [B, 1]
    above = torch.zeros(len(targets), dtype=torch.long, device=state.device)
    ranked = torch.zeros_like(above)  # items ranked by the backbone score (not listed, not excluded, not 0)
    taken = torch.cat([lists, drop], 1)  # [B, T]
    rows = torch.arange(len(targets), device=state.device)[:, None].expand_as(taken)
    for start in range(0, len(table), chunk_items):
        scores = state @ table[start: start + chunk_items].T  # [B, c]
        by_backbone = torch.ones_like(scores, dtype=torch.bool)
        local = taken - start
        inside = (local >= 0) & (local < scores.shape[1])
        by_backbone[rows[inside], local[inside]] = False
        if start == 0:
            by_backbone[:, 0] = False  # padding
        ranked += by_backbone.sum(1)
        own = (targets[:, None] - start) == torch.arange(scores.shape[1], device=state.device)  # [B, c]
        above += (by_backbone & (scores > target_seq) & ~own).sum(1)
    excluded_target = (drop == targets[:, None]).any(1)  # scored -inf: below every ranked item
    return torch.where(excluded_target, 1 + valid.sum(1) + ranked,
                       torch.where(listed, rank_in_list, 1 + valid.sum(1) + above))


def source_recall(lists: CandidateLists, targets: torch.Tensor) -> dict[str, float]:
    """Share of the targets ``[B]`` in the candidates overall and through each source (recall@M)."""
    hit = lists.items == targets[:, None]  # [B, M]
    out = {"overall": float(hit.any(1).float().mean())}
    for j, name in enumerate(SOURCES):
        out[name] = float((hit & (lists.source == j)).any(1).float().mean())
    return out
