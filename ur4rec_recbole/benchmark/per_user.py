"""Per-user test NDCG@k, for paired significance tests between models.

RecBole reports only the mean over users. The paired test needs each user's
value, computed on exactly the scores RecBole's evaluator ranks: the trainer's
own batch scoring (``full_sort_predict`` with padding and, for general models,
history items set to -inf; or the sampled candidates in ``uni100`` mode), then
top-k as RecBole's collector takes it.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader


@torch.no_grad()
def per_user_ndcg(trainer, eval_data, k: int = 10) -> dict[str, list]:
    """``{"user_id": [...], "ndcg@k": [...]}``: one entry per evaluated user, in loader order.

    ``trainer`` must hold the model to test (the best-valid checkpoint is
    loaded by ``trainer.evaluate``, which must have run on ``eval_data``).
    """
    model = trainer.model
    model.eval()
    batch_eval = (
        trainer._full_sort_batch_eval  # the evaluator's own scoring and masking
        if isinstance(eval_data, FullSortEvalDataLoader)
        else trainer._neg_sample_batch_eval
    )
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
        users.append(interaction[uid_field].cpu().numpy())
    return {"user_id": np.concatenate(users).tolist(), f"ndcg@{k}": np.concatenate(values).tolist()}
