"""Per-user test NDCG@k, for paired significance tests between models.

RecBole reports only the mean over users. The paired test needs each user's
value, computed on exactly the scores RecBole's evaluator ranks: the trainer's
own batch scoring (``full_sort_predict`` with padding and, for general models,
history items set to -inf; or the sampled candidates in ``uni100`` mode), then
top-k as RecBole's collector takes it. Sampled evaluation draws its candidates
while iterating, so the random state from before RecBole's test pass is
restored first (:func:`random_state`), and the same candidates are drawn again.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader


def random_state() -> tuple:
    """Python, NumPy and torch random states, for :func:`set_random_state`."""
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def set_random_state(state: tuple) -> None:
    """Restore what :func:`random_state` returned."""
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


@torch.no_grad()
def per_user_ndcg(trainer, eval_data, k: int = 10) -> dict[str, list]:
    """``{"user_id": [...], "ndcg@k": [...]}``: one entry per evaluated user, in loader order.

    ``trainer`` must hold the model to test (the best-valid checkpoint is
    loaded by ``trainer.evaluate``, which must have run on ``eval_data``).
    """
    model = trainer.model
    model.eval()
    full_sort = isinstance(eval_data, FullSortEvalDataLoader)
    # the evaluator's own scoring and masking
    batch_eval = trainer._full_sort_batch_eval if full_sort else trainer._neg_sample_batch_eval
    uid_field = trainer.config["USER_ID_FIELD"]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # [k] 1/log2(rank+1)
    users, values = [], []
    for batch in eval_data:
        interaction, scores, positive_u, positive_i = batch_eval(batch)  # scores [B, N]
        _, top = torch.topk(scores, k, dim=-1)  # [B, k], as RecBole's collector
        hits = torch.zeros_like(scores, dtype=torch.int)
        hits[positive_u, positive_i] = 1
        n_pos = hits.sum(dim=1).cpu().numpy()  # [B]
        in_top = torch.gather(hits, 1, top).cpu().numpy()  # [B, k]
        dcg = (in_top * discounts).sum(axis=1)  # [B]
        idcg = np.array([discounts[: max(min(n, k), 1)].sum() for n in n_pos])  # [B]
        values.append(np.where(n_pos > 0, dcg / idcg, 0.0))
        if full_sort:  # one interaction row per scored row
            batch_users = interaction[uid_field].cpu()
        else:  # one row per (user, candidate); row_idx maps them to scored rows
            batch_users = torch.empty(scores.shape[0], dtype=torch.long)
            batch_users[batch[1].cpu()] = interaction[uid_field].cpu()
        users.append(batch_users.numpy())
    return {"user_id": np.concatenate(users).tolist(), f"ndcg@{k}": np.concatenate(values).tolist()}
