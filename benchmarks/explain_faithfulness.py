"""Are explanations faithful? Removing the top-attended history item must lower the retriever score most.

    python run_ur4rec.py --dataset ml-100k --results saved/UR4Rec-ml-100k.json
    python benchmarks/explain_faithfulness.py --checkpoint saved/UR4Rec-ml-100k.json

For every known user, the top ``--k`` recommendations are explained as
``recommend(user, explain=True)`` explains them: the proxy that matched the
item and the history item that proxy attended to most. That item is then taken
out of the retriever's memory and the item's retriever score (max over proxies
of cosine / temperature) is computed again; so is the score with a random history
item taken out instead (uniform over the history items in memory, ``--draws``
draws per item, averaged). Per user, the drops are averaged over the items; the
report gives the mean over users of both drops, the mean paired difference with
its standard deviation and 95% interval, the share of users whose top-attended
removal drops more, and a two-sided Wilcoxon signed-rank test over users.
Writes ``benchmarks/results/explain-faithfulness-<dataset>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from ur4rec_recbole.io import machine, write_json, write_text
from ur4rec_recbole.run.recommend import Recommender
from ur4rec_recbole.run.recommend.scorers import Batch


def repeat(batch: Batch, times: int) -> Batch:
    """Each request ``times`` times in a row (one copy per item to re-score)."""
    twice = {name: None if value is None else value.repeat_interleave(times, dim=0)
             for name, value in vars(batch).items()}
    return Batch(**twice)


def retriever_scores(rec: Recommender, batch: Batch, items: torch.Tensor, removed: torch.Tensor | None) -> torch.Tensor:
    """The retriever score of ``items`` ``[B, k]`` with ``removed`` ``[B, L]`` history items out of the memory."""
    return rec.scorer.reasons(batch, items, removed).proxy_scores.amax(dim=1)  # [B, k]


def drops_for(rec: Recommender, users: list[str], k: int, draws: int, rng: np.random.Generator) -> dict:
    """Per user: mean drop of the item's retriever score when the top-attended / a random history item is removed."""
    batch = rec.batch(users)
    answers = rec.recommend_many(users, k=k, batch_size=len(users))
    items = torch.tensor([[rec.catalogue.item_ids[i.item] for i in a.items] for a in answers])  # [B, k]
    reasons = rec.scorer.reasons(batch, items)
    base = reasons.proxy_scores.amax(dim=1)  # [B, k]
    history = torch.tensor([kind != "preference" for kind in reasons.slot_kinds])  # [M]
    positions = reasons.slot_position  # [M]
    length = batch.item_seq.shape[1]
    chosen = torch.gather(reasons.attention, 1, reasons.proxy[:, :, None].expand(-1, -1, reasons.attention.shape[-1]))
    chosen = chosen.masked_fill(~(reasons.valid & history)[:, None, :], -1.0)  # [B, k, M]: history slots only
    top_slot = chosen.argmax(dim=-1)  # [B, k]
    top_weight = chosen.max(dim=-1).values  # [B, k]
    n, kk = items.shape
    removed = torch.zeros(n * kk, length, dtype=torch.bool)
    removed[torch.arange(n * kk), positions[top_slot.reshape(-1)]] = True
    expanded, flat_items = repeat(batch, kk), items.reshape(-1, 1)
    top = retriever_scores(rec, expanded, flat_items, removed).view(n, kk)
    random_scores = []
    in_memory = batch.item_seq_len.repeat_interleave(kk)  # history slots 0..len-1 hold items
    for _ in range(draws):
        pick = torch.from_numpy((rng.random(n * kk) * in_memory.numpy()).astype(np.int64))
        removed = torch.zeros(n * kk, length, dtype=torch.bool)
        removed[torch.arange(n * kk), pick] = True
        random_scores.append(retriever_scores(rec, expanded, flat_items, removed).view(n, kk))
    random = torch.stack(random_scores).mean(dim=0)
    return {"top": (base - top).mean(dim=1), "random": (base - random).mean(dim=1),
            "top_weight": top_weight.mean(dim=1), "history": batch.item_seq_len.float()}


def markdown(result: dict) -> str:
    s, where = result["summary"], result["machine"]
    return "\n".join([
        f"Faithfulness of explanations, {result['model']} on {result['dataset']} ({s['users']} users, top "
        f"{result['k']} items each, {result['draws']} random draws per item; {where['cpu_count']} cores):",
        "",
        "| removed from the memory | mean drop of the item's retriever score |",
        "|---|---|",
        f"| the history item its proxy attended to most | {s['drop_top_mean']:.4f} |",
        f"| a random history item | {s['drop_random_mean']:.4f} |",
        "",
        f"Paired difference (top − random) over users: {s['difference_mean']:.4f} ± {s['difference_std']:.4f} "
        f"(std), 95% interval [{s['difference_ci95'][0]:.4f}, {s['difference_ci95'][1]:.4f}]; top-attended removal "
        f"drops more for {100 * s['share_top_larger']:.1f}% of users; Wilcoxon signed-rank p = {s['wilcoxon_p']:.2g}. "
        f"Mean attention on the top history slot: {s['top_weight_mean']:.3f} (history in memory: "
        f"{s['history_mean']:.1f} items on average).",
    ]) + "\n"


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a UR4Rec checkpoint, or the --results JSON of its run")
    parser.add_argument("--k", type=int, default=10, help="recommended items explained per user")
    parser.add_argument("--draws", type=int, default=5, help="random removals per item")
    parser.add_argument("--batch", type=int, default=64, help="users per call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (default benchmarks/results/explain-faithfulness-<dataset>.json); .md beside it")
    args = parser.parse_args(argv)
    rec = Recommender.load(args.checkpoint)
    if not rec.scorer.explains:
        raise SystemExit(f"{rec.config['model']} has no retriever in its ranking: nothing to explain")
    rng = np.random.default_rng(args.seed)
    users = [u for u in rec.users() if len(rec.catalogue.histories[rec.catalogue.user_ids[u]]) >= 2]
    parts = [drops_for(rec, users[i: i + args.batch], args.k, args.draws, rng)
             for i in tqdm(range(0, len(users), args.batch), desc="users", unit="batch")]
    per_user = {key: torch.cat([p[key] for p in parts]).numpy().astype(float) for key in parts[0]}
    diff = per_user["top"] - per_user["random"]
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    summary = {
        "users": len(diff),
        "drop_top_mean": float(per_user["top"].mean()), "drop_random_mean": float(per_user["random"].mean()),
        "difference_mean": float(diff.mean()), "difference_std": float(diff.std(ddof=1)),
        "difference_ci95": [float(diff.mean() - half), float(diff.mean() + half)],
        "share_top_larger": float((diff > 0).mean()),
        "wilcoxon_p": float(stats.wilcoxon(per_user["top"], per_user["random"]).pvalue),
        "top_weight_mean": float(per_user["top_weight"].mean()), "history_mean": float(per_user["history"].mean()),
    }
    result = {"command": " ".join(["python", *sys.argv]), "checkpoint": str(args.checkpoint),
              "model": rec.config["model"], "dataset": rec.config["dataset"], "k": args.k, "draws": args.draws,
              "seed": args.seed, "machine": machine(), "summary": summary,
              "per_user": {"users": users, "drop_top": per_user["top"].tolist(),
                           "drop_random": per_user["random"].tolist()}}
    output = args.output or Path(__file__).parent / "results" / f"explain-faithfulness-{rec.config['dataset']}.json"
    write_json(output, result)
    table = markdown(result)
    write_text(output.with_suffix(".md"), table)
    print(table)
    return result


if __name__ == "__main__":
    main()
