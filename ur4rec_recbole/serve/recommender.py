"""Top-k recommendations from a trained model, for known users and for histories given at request time.

    rec = Recommender.load("saved/UR4Rec-....pth")
    rec.recommend("196", k=10)                               # a known user
    rec.recommend(history=["50", "172", "133"], k=10)        # a user the model never saw
    rec.recommend("196", candidates=["1", "50", "300"])      # rerank a given list
    rec.recommend("196", explain=True)                       # why each item
    rec.recommend_many(rec.users(), k=10, progress=True)     # everyone, in batches
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.model.ur4rec import RetrieverReasons
from ur4rec_recbole.serve.catalogue import Catalogue
from ur4rec_recbole.serve.loading import Loaded, load_model
from ur4rec_recbole.serve.results import Explanation, Recommendation, RecommendedItem, Slot
from ur4rec_recbole.serve.scorers import Batch, Scores, scorer_for

SLOT_KINDS = {"preference": "preference", "text": "history", "image": "history image"}


@dataclass
class Explained:
    """What the model said about a batch's top items, before naming."""

    reasons: RetrieverReasons  # what UR4Rec.explain returned
    weights: torch.Tensor  # [B, k, S] the matched proxy's attention on the shown slots (-1: a masked slot)
    shown: torch.Tensor  # [B, k, S] the slots shown (memory indices), most attended first
    effects: torch.Tensor  # [B, k, S] retriever score minus the score without the slot


@dataclass
class Request:
    """One user's request, resolved to internal ids."""

    user: str | None  # token of a known user, None for a given history
    uid: int  # internal id, 0 for a given history
    history: np.ndarray  # every observed item (internal ids), oldest first
    candidates: np.ndarray | None  # items to rank (internal ids); None: the catalogue
    profile: bool | str  # True: stored (known) or template (given history); False: masked; str: this text


class Recommender:
    """A trained model that answers top-k requests with raw tokens, titles, score parts and reasons."""

    def __init__(self, loaded: Loaded, title_field: str | None = None) -> None:
        self.config, self.model = loaded.config, loaded.model
        self.catalogue = Catalogue(loaded.config, loaded.dataset, title_field)
        self.scorer = scorer_for(loaded.model, loaded.config)
        self.device = next(loaded.model.parameters()).device
        self.max_length = int(loaded.config["MAX_ITEM_LIST_LENGTH"])

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, data_path: str | os.PathLike | None = None,
             device: str = "cpu", title_field: str | None = None) -> "Recommender":
        """Rebuild model, configuration and vectors from ``checkpoint`` and the dataset folder it names.

        ``checkpoint`` may also be the ``--results`` JSON of the run that saved
        it. ``data_path``: the folder holding ``<dataset>/`` if it moved since
        training. A folder whose atomic files or vector tables changed since
        training is refused with one line naming them. ``title_field``: the
        ``.item`` column shown as titles (default: one named ``title``, or
        labelled so in ``text_field_labels``).
        """
        return cls(load_model(checkpoint, data_path, device), title_field)

    def users(self) -> list[str]:
        """Tokens of every known user (every user with a history)."""
        return self.catalogue.users()

    # -- the API --------------------------------------------------------------
    def recommend(self, user: str | None = None, *, history: Sequence[str] | None = None, k: int = 10,
                  exclude_history: bool = True, candidates: Sequence[str] | None = None, explain: bool = False,
                  profile: bool | str = True, top_slots: int | None = 3) -> Recommendation:
        """The top ``k`` items for one known ``user`` or one ``history`` (item tokens, oldest first).

        A known user's history is everything observed for them: training,
        validation and test items (at serving time all of it is input), and
        their preference text is the stored one. A given ``history`` is the
        whole sequence of a user the model never saw; their preference text
        is written from it by the template backend and encoded with the
        model's sentence encoder (``profile=False`` masks the slot instead; a
        string is used as the text). Items in the history are left out unless
        ``exclude_history=False`` (here the history is everything observed for
        the user; the model setting ``exclude_history`` masks only the input
        sequence of a ranking). ``candidates`` ranks that list instead of the
        catalogue (at most ``k`` of it). ``explain=True`` adds, per item, the
        proxy that matched it and the ``top_slots`` memory slots it attended
        to most (None: all). Unknown tokens raise one :class:`InputError`
        naming them.
        """
        if (user is None) == (history is None):
            raise InputError("give a known user's token or a history, not both and not neither")
        users, histories = ([user], None) if history is None else (None, [history])
        return self.recommend_many(users, histories=histories, k=k, exclude_history=exclude_history, candidates=candidates,
                                   explain=explain, profile=profile, top_slots=top_slots)[0]

    def recommend_many(self, users: Sequence[str] | None = None, *, histories: Sequence[Sequence[str]] | None = None,
                       k: int = 10, exclude_history: bool = True,
                       candidates: Sequence[str] | Sequence[Sequence[str]] | None = None, explain: bool = False,
                       profile: bool | str = True, top_slots: int | None = 3, batch_size: int = 256,
                       progress: bool = False) -> list[Recommendation]:
        """:meth:`recommend` for many known ``users`` or many ``histories``, ``batch_size`` at a time.

        ``candidates`` is one list for all, or one list per request.
        """
        return list(self.iter_recommendations(users, histories=histories, k=k, exclude_history=exclude_history,
                                              candidates=candidates, explain=explain, profile=profile,
                                              top_slots=top_slots, batch_size=batch_size, progress=progress))

    def iter_recommendations(self, users: Sequence[str] | None = None, *,
                             histories: Sequence[Sequence[str]] | None = None, k: int = 10,
                             exclude_history: bool = True,
                             candidates: Sequence[str] | Sequence[Sequence[str]] | None = None,
                             explain: bool = False, profile: bool | str = True, top_slots: int | None = 3,
                             batch_size: int = 256, progress: bool = False) -> Iterator[Recommendation]:
        """:meth:`recommend_many` as a stream (``--all`` writes it to a file as it comes)."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"k={k!r}: expected a positive whole number of items")
        if batch_size < 1:
            raise InputError(f"batch_size={batch_size!r}: expected a positive whole number")
        if top_slots is not None and top_slots < 1:
            raise InputError(f"top_slots={top_slots!r}: expected a positive number of slots, or None for all")
        if candidates is not None and len(candidates) == 0:
            raise InputError("candidates is empty: give the item tokens to rank, or None for the catalogue")
        requests = self._requests(users, histories, candidates, profile)
        bar = tqdm(total=len(requests), desc="recommend", unit="user", disable=not progress)
        for start in range(0, len(requests), batch_size):
            chunk = requests[start: start + batch_size]
            yield from self._answer(chunk, k, exclude_history, explain, top_slots)
            bar.update(len(chunk))
        bar.close()

    def batch(self, users: Sequence[str] | None = None, *, histories: Sequence[Sequence[str]] | None = None,
              profile: bool | str = True) -> Batch:
        """The model's input for known users or histories, as :meth:`recommend` builds it (benchmarks read it)."""
        return self._batch(self._requests(users, histories, None, profile))[0]

    # -- requests -> ids ------------------------------------------------------
    def _requests(self, users, histories, candidates, profile) -> list[Request]:
        if (users is None) == (histories is None):
            raise InputError("give known users' tokens or histories, not both and not neither")
        count = len(users if users is not None else histories)
        per_request = candidates is not None and len(candidates) > 0 and not isinstance(candidates[0], str)
        if per_request and len(candidates) != count:
            raise InputError(f"{len(candidates)} candidate lists for {count} requests: give one list per request "
                             f"or one list for all")
        if histories is not None and any(len(h) == 0 for h in histories):
            raise InputError("a given history is empty: a user needs at least one observed item")
        if histories is not None and any(isinstance(h, str) for h in histories):
            raise InputError("a history is a list of item tokens, e.g. ['50', '172', '133'], not one string")
        lists = list(histories or []) + (list(candidates) if per_request else [candidates] if candidates else [])
        uids, item_lists = self.catalogue.resolve(users or [], lists)
        given, listed = item_lists[: len(histories or [])], item_lists[len(histories or []):]
        if per_request:
            wanted = listed
        elif candidates:
            wanted = listed * count  # one list for every request
        else:
            wanted = [None] * count  # the catalogue
        if users is not None:
            return [Request(str(u), uid, self.catalogue.histories[uid], c, profile)
                    for u, uid, c in zip(users, uids, wanted)]
        return [Request(None, 0, h, c, profile) for h, c in zip(given, wanted)]

    def _profiles(self, requests: list[Request]) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
        """Preference vectors ``[B, D]``, validity ``[B]`` and texts of the requests."""
        stored, stored_valid = self.model.user_text, self.model.user_text_mask
        vectors = stored[[r.uid for r in requests]].clone()  # row 0 (padding) for given histories
        valid = stored_valid[[r.uid for r in requests]].clone()
        texts: list[str | None] = [None] * len(requests)
        to_encode: dict[int, str] = {}
        for i, r in enumerate(requests):
            if r.profile is False:
                vectors[i], valid[i] = 0.0, False
            elif isinstance(r.profile, str):
                to_encode[i] = r.profile
            elif r.user is not None:
                texts[i] = self.catalogue.preference_texts.get(r.user) if bool(valid[i]) else None
            else:
                text = self.catalogue.profile_text(r.history)
                if text is None:  # the history's items have no profile fields: no slot
                    vectors[i], valid[i] = 0.0, False
                else:
                    to_encode[i] = text
        if to_encode:
            encoded = torch.from_numpy(self.catalogue.encode(list(to_encode.values()))).to(vectors)
            for row, (i, text) in enumerate(to_encode.items()):
                vectors[i], valid[i], texts[i] = encoded[row], True, text
        return vectors, valid, texts

    def _batch(self, requests: list[Request]) -> tuple[Batch, list[str | None]]:
        length = self.max_length
        seq = np.zeros((len(requests), length), dtype=np.int64)
        lengths = np.zeros(len(requests), dtype=np.int64)
        for i, r in enumerate(requests):
            last = r.history[-length:]
            seq[i, : len(last)], lengths[i] = last, len(last)
        user_text = user_valid = None
        texts: list[str | None] = [None] * len(requests)
        if self.scorer.uses_profiles:
            user_text, user_valid, texts = self._profiles(requests)
        to = self.device
        users = torch.tensor([r.uid for r in requests], device=to)
        return Batch(torch.from_numpy(seq).to(to), torch.from_numpy(lengths).to(to), users,
                     user_text, user_valid), texts

    # -- scores -> answers ----------------------------------------------------
    def _answer(self, requests: list[Request], k: int, exclude_history: bool, explain: bool,
                top_slots: int | None) -> list[Recommendation]:
        batch, texts = self._batch(requests)
        scores = self.scorer.scores(batch)
        ranked = scores.score.clone()
        ranked[:, 0] = -torch.inf  # padding
        for i, r in enumerate(requests):
            if r.candidates is not None:
                allowed = torch.zeros(ranked.shape[1], dtype=torch.bool, device=ranked.device)
                allowed[torch.from_numpy(r.candidates).to(ranked.device)] = True
                ranked[i, ~allowed] = -torch.inf
            if exclude_history:
                ranked[i, torch.from_numpy(r.history).to(ranked.device)] = -torch.inf
        top_scores, top = torch.topk(ranked, min(k, ranked.shape[1]), dim=1)  # [B, k]
        explained = self._explain(batch, top, top_slots) if explain and self.scorer.explains else None
        return [self._recommendation(i, r, texts[i], top[i], top_scores[i], scores, explained, batch)
                for i, r in enumerate(requests)]

    def _recommendation(self, i: int, request: Request, text: str | None, top: torch.Tensor,
                        top_scores: torch.Tensor, scores: Scores, explained, batch: Batch) -> Recommendation:
        keep = torch.isfinite(top_scores)
        items, values = top[keep].tolist(), top_scores[keep].tolist()
        sequence = scores.sequence[i, top[keep]].tolist()
        retriever = scores.retriever[i, top[keep]].tolist() if scores.retriever is not None else [None] * len(items)
        catalogue = self.catalogue
        answer = Recommendation(request.user, len(request.history), text)
        for j, (item, value, seq, ret) in enumerate(zip(items, values, sequence, retriever)):
            explanation = None if explained is None else self._explanation(i, j, explained, batch, request)
            answer.items.append(RecommendedItem(j + 1, str(catalogue.item_tokens[item]), catalogue.titles[item],
                                                value, seq, ret, explanation))
        return answer

    def _explain(self, batch: Batch, top: torch.Tensor, top_slots: int | None) -> Explained:
        """Reasons for the top items ``[B, k]``: the matched proxies' most attended slots and their effects."""
        reasons = self.scorer.reasons(batch, top)
        weights = reasons.item_attention.masked_fill(~reasons.valid[:, None, :], -1.0)  # [B, k, M]: masked slots last
        most = int(reasons.valid.sum(dim=1).max())  # slots in the fullest memory of the batch
        shown_weights, shown = weights.topk(most if top_slots is None else min(top_slots, most), dim=-1)  # [B, k, S]
        effects = self._effects(batch, top, reasons, shown)
        return Explained(reasons, shown_weights, shown, effects)

    @torch.no_grad()
    def _effects(self, batch: Batch, top: torch.Tensor, reasons: RetrieverReasons, shown: torch.Tensor,
                 rows_per_call: int = 512) -> torch.Tensor:
        """How much each shown slot's removal lowers its item's retriever score. ``[B, k, S]``"""
        batch_size, k, count = shown.shape
        base = reasons.score  # [B, k] the items' retriever scores (the proxies' scores pooled)
        request, item = torch.meshgrid(torch.arange(batch_size), torch.arange(k), indexing="ij")
        request = request[..., None].expand(-1, -1, count).reshape(-1).to(top.device)  # [R]
        item = item[..., None].expand(-1, -1, count).reshape(-1).to(top.device)
        slot = shown.reshape(-1)  # [R]
        drops = torch.empty(len(slot), device=top.device)
        for start in range(0, len(slot), rows_per_call):
            rows = slice(start, start + rows_per_call)
            part = batch.take(request[rows])
            position = reasons.slot_position.to(top.device)[slot[rows]]  # -1: the preference slot
            removed = torch.zeros_like(part.item_seq, dtype=torch.bool)
            history = position >= 0
            removed[torch.nonzero(history).squeeze(1), position[history]] = True
            part.user_valid = part.user_valid & history  # taking the preference slot out masks it
            after = self.scorer.reasons(part, top[request[rows], item[rows]][:, None], removed)
            drops[rows] = base[request[rows], item[rows]] - after.score[:, 0]
        return drops.view(batch_size, k, count)

    def _explanation(self, i: int, j: int, explained: Explained, batch: Batch, request: Request) -> Explanation:
        """Item ``j`` of request ``i``: its proxy and the slots that proxy attended to most, named."""
        reasons = explained.reasons
        offset = len(request.history) - int(batch.item_seq_len[i])  # history index of the first item in memory
        slots = []
        for m, weight, effect in zip(explained.shown[i, j].tolist(), explained.weights[i, j].tolist(),
                                     explained.effects[i, j].tolist()):
            if weight < 0:  # a masked slot (this memory has fewer slots than asked for)
                continue
            effect = effect if np.isfinite(effect) else None  # nothing left in the memory without it
            kind, position = SLOT_KINDS[reasons.slot_kinds[m]], int(reasons.slot_position[m])
            if kind == "preference":
                slots.append(Slot(kind, weight, effect=effect))
            else:
                item = int(batch.item_seq[i, position])
                slots.append(Slot(kind, weight, str(self.catalogue.item_tokens[item]), self.catalogue.titles[item],
                                  offset + position, effect))
        return Explanation(int(reasons.proxy[i, j]), slots)
