"""Are explanations faithful? Removing the top-attended history item must lower the retriever score most.

    python run_ur4rec.py --dataset ml-100k --results saved/UR4Rec-ml-100k.json
    python benchmarks/explain_faithfulness.py --checkpoint saved/UR4Rec-ml-100k.json

For every known user, the top ``--k`` recommendations are explained exactly as
``recommend(user, explain=True, top_slots=None)`` explains them: the proxy that
matched the item, its attention over every memory slot, and each slot's effect
(the item's retriever score, before the fusion weighs it, minus the score with
that slot taken out of the memory, recomputed by the model). Under
``retriever_scoring: slots`` the effect is ``-log(1 - attention)`` by
construction and the benchmark checks it on real data; under ``proxies`` it
is whatever the transformer block makes of the changed mix. Per item, the drop for the
top-attended history item is the effect of the history slot with the most
attention; the drop for a random history item is the mean effect over the
history slots (the expectation of removing one uniformly at random, computed
exactly rather than sampled). Both are averaged over the user's items; the
report gives their means over users, the mean paired difference with its
standard deviation and 95% interval, the share of users for whom the
top-attended removal drops more, a two-sided Wilcoxon signed-rank test over
users, and the mean Spearman correlation between attention and effect over
the history slots of an item. Writes
``benchmarks/results/explain-faithfulness-<dataset>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm import tqdm

from ur4rec_recbole.io import machine, write_result_files
from ur4rec_recbole.serve import Recommender


def user_drops(answer) -> tuple[float, ...]:
    """Item averages: drop for the top-attended history item, mean drop over history items,
    Spearman(attention, effect), the top history slot's attention, history slots in memory, and the
    weight every slot would have under uniform attention."""
    top, random, rho, weight, slots, uniform = [], [], [], [], [], []
    for item in answer.items:
        history = [s for s in item.explanation.slots if s.kind == "history" and s.effect is not None]
        if len(history) < 2:
            continue
        top.append(history[0].effect)  # slots come most attended first
        random.append(float(np.mean([s.effect for s in history])))
        rho.append(stats.spearmanr([s.weight for s in history], [s.effect for s in history]).correlation)
        weight.append(history[0].weight)
        slots.append(len(history))
        uniform.append(1 / len(item.explanation.slots))
    return tuple(float(np.nanmean(values)) for values in (top, random, rho, weight, slots, uniform))


def markdown(result: dict) -> str:
    s = result["summary"]
    return "\n".join([
        f"Faithfulness of explanations, {result['model']} on {result['dataset']} ({s['users']} users, top "
        f"{result['k']} items each):",
        "",
        "| removed from the memory | mean drop of the item's retriever score |",
        "|---|---|",
        f"| the history item its proxy attended to most | {s['drop_top_mean']:.4f} |",
        f"| a random history item (expectation) | {s['drop_random_mean']:.4f} |",
        "",
        f"Paired difference (top − random) over users: {s['difference_mean']:.4f} ± {s['difference_std']:.4f} "
        f"(std), 95% interval [{s['difference_ci95'][0]:.4f}, {s['difference_ci95'][1]:.4f}]; top-attended removal "
        f"drops more for {100 * s['share_top_larger']:.1f}% of users; Wilcoxon signed-rank p = {s['wilcoxon_p']:.2g}. "
        f"Spearman correlation of attention and effect over an item's history slots: "
        f"{s['spearman_attention_effect']:+.3f} (mean over items). The most attended history slot holds "
        f"{s['top_history_weight_mean']:.3f} of the attention on average, over {s['history_slots_mean']:.1f} "
        f"history slots (uniform attention would give every slot {s['uniform_weight_mean']:.3f}).",
    ]) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a UR4Rec checkpoint, or the --results JSON of its run")
    parser.add_argument("--k", type=int, default=10, help="recommended items explained per user")
    parser.add_argument("--batch", type=int, default=64, help="users per call")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (default benchmarks/results/explain-faithfulness-<dataset>.json); .md beside it")
    args = parser.parse_args(argv)
    rec = Recommender.load(args.checkpoint)
    if not rec.scorer.explains:
        raise SystemExit(f"{rec.config['model']} has no retriever in its ranking: nothing to explain")
    users = [u for u in rec.users() if len(rec.catalogue.histories[rec.catalogue.user_ids[u]]) >= 2]
    answers = rec.iter_recommendations(users, k=args.k, explain=True, top_slots=None, batch_size=args.batch)
    rows = [user_drops(answer) for answer in tqdm(answers, total=len(users), desc="users")]
    top, random, rho, weight, slots, uniform = (np.asarray(column) for column in zip(*rows))
    diff = top - random
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    summary = {
        "users": len(diff), "drop_top_mean": float(top.mean()), "drop_random_mean": float(random.mean()),
        "difference_mean": float(diff.mean()), "difference_std": float(diff.std(ddof=1)),
        "difference_ci95": [float(diff.mean() - half), float(diff.mean() + half)],
        "share_top_larger": float((diff > 0).mean()), "wilcoxon_p": float(stats.wilcoxon(top, random).pvalue),
        "spearman_attention_effect": float(np.nanmean(rho)),
        "top_history_weight_mean": float(weight.mean()), "history_slots_mean": float(slots.mean()),
        "uniform_weight_mean": float(uniform.mean()),
    }
    result = {"command": " ".join(["python", *sys.argv]), "checkpoint": str(args.checkpoint),
              "model": rec.config["model"], "dataset": rec.config["dataset"], "k": args.k, "machine": machine(),
              "summary": summary, "per_user": {"users": users, "drop_top": top.tolist(), "drop_random": random.tolist()}}
    output = args.output or Path(__file__).parent / "results" / f"explain-faithfulness-{rec.config['dataset']}.json"
    write_result_files(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
