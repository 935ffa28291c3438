"""Per-user test NDCG@k and Recall@k, for paired tests between models and the bucket report.

RecBole reports only the mean over users. The paired test needs each user's
value, computed on exactly the scores RecBole's evaluator ranks: the trainer's
own batch scoring (``full_sort_predict`` with padding and, for general models,
history items set to -inf; or the sampled candidates in ``uni100`` mode), then
top-k as RecBole's collector takes it. Sampled evaluation draws its candidates
while iterating, so the random state from before RecBole's test pass is
restored first (:func:`random_state`), and the same candidates are drawn again.

Bucket report ("where text helps"): each user's target item falls in a bucket
of its training frequency, how often it occurs in the training split (the
training portions, cold items removed, for sequential models; the training
rows for RecBole's general models): ``0``, ``1-4``, ``5-19``, ``>=20``; under
the cold-item protocol the users whose target is a cold item also form the
group ``cold`` (a subset of ``0``).
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence

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


BUCKETS = (("0", 0, 0), ("1-4", 1, 4), ("5-19", 5, 19), (">=20", 20, None))  # name, lowest, highest count
COLD = "cold"  # users whose target is a cold item (cold_items)
BUCKET_METRICS = ("ndcg@10", "recall@10")


def bucket_of(count: int) -> str:
    """The name of the training-frequency bucket that holds ``count``."""
    return next(name for name, low, high in BUCKETS if count >= low and (high is None or count <= high))


def training_counts(train_dataset) -> np.ndarray:
    """How often each item occurs in the training split. ``[n_items]``

    Sequential datasets of this package keep each user's training portion
    (``training_histories``, the first item included); RecBole's general
    datasets hold one training row per training interaction.
    """
    n_items = train_dataset.item_num
    portions = getattr(train_dataset, "training_histories", None)
    if portions is not None:
        items = np.concatenate([np.zeros(0, dtype=np.int64), *portions.values()])
    else:
        items = train_dataset.inter_feat[train_dataset.iid_field].numpy()
    return np.bincount(items, minlength=n_items)


def target_groups(targets: Sequence[int], counts: np.ndarray, cold_items: np.ndarray) -> dict[str, list]:
    """Per user: the target's training count, bucket and whether it is cold (``None`` without one target)."""
    cold = set(np.asarray(cold_items).tolist())
    known = [t >= 0 for t in targets]
    return {
        "train_count": [int(counts[t]) if ok else None for t, ok in zip(targets, known)],
        "bucket": [bucket_of(int(counts[t])) if ok else None for t, ok in zip(targets, known)],
        "cold": [t in cold if ok else None for t, ok in zip(targets, known)],
    }


def in_group(per_user: Mapping[str, list], group: str) -> np.ndarray:
    """Mask of the users of ``per_user`` in bucket ``group`` (or the cold group). ``[U]``"""
    if group == COLD:
        return np.array([c is True for c in per_user["cold"]])
    return np.array([b == group for b in per_user["bucket"]])


def bucket_report(per_user: Mapping[str, list], with_cold: bool) -> dict[str, dict]:
    """``{bucket: {"users": n, "ndcg@10": mean, "recall@10": mean}}`` (means ``None`` for an empty bucket)."""
    report = {}
    for group in [name for name, _, _ in BUCKETS] + ([COLD] if with_cold else []):
        mask = in_group(per_user, group)
        report[group] = {"users": int(mask.sum()),
                         **{m: float(np.mean(np.asarray(per_user[m])[mask])) if mask.any() else None
                            for m in BUCKET_METRICS}}
    return report


@torch.no_grad()
def per_user_metrics(trainer, eval_data, k: int = 10) -> dict[str, list]:
    """``{"user_id", "item_id", "ndcg@k", "recall@k"}``: one entry per evaluated user, in loader order.

    ``item_id`` is the user's target (``-1`` when a user has several or none).
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
    depth = max(k, *trainer.config["topk"])  # the collector's one top-k call takes max(topk) items
    users, targets, ndcg, recall = [], [], [], []
    for batch in eval_data:
        interaction, scores, positive_u, positive_i = batch_eval(batch)  # scores [B, N]
        _, top = torch.topk(scores, depth, dim=-1)  # as RecBole's collector: ties fall as its top-k leaves them
        top = top[:, :k]  # [B, k]
        hits = torch.zeros_like(scores, dtype=torch.int)
        hits[positive_u, positive_i] = 1
        n_pos = hits.sum(dim=1).cpu().numpy()  # [B]
        in_top = torch.gather(hits, 1, top).cpu().numpy()  # [B, k]
        dcg = (in_top * discounts).sum(axis=1)  # [B]
        idcg = np.array([discounts[: max(min(n, k), 1)].sum() for n in n_pos])  # [B]
        ndcg.append(np.where(n_pos > 0, dcg / idcg, 0.0))
        recall.append(in_top.sum(axis=1) / np.maximum(n_pos, 1))
        target = np.full(scores.shape[0], -1, dtype=np.int64)  # [B]
        single = n_pos[positive_u.cpu().numpy()] == 1
        target[positive_u.cpu().numpy()[single]] = positive_i.cpu().numpy()[single]
        targets.append(target)
        if full_sort:  # one interaction row per scored row
            batch_users = interaction[uid_field].cpu()
        else:  # one row per (user, candidate); row_idx maps them to scored rows
            batch_users = torch.empty(scores.shape[0], dtype=torch.long)
            batch_users[batch[1].cpu()] = interaction[uid_field].cpu()
        users.append(batch_users.numpy())
    return {"user_id": np.concatenate(users).tolist(), "item_id": np.concatenate(targets).tolist(),
            f"ndcg@{k}": np.concatenate(ndcg).tolist(), f"recall@{k}": np.concatenate(recall).tolist()}
