"""Retriever ablation on VALIDATION: one design choice changed at a time from the shipped UR4Rec.

    python benchmarks/retriever_ablation.py --dataset amazon-office \\
        --out benchmarks/results/retriever-ablation-amazon-office [--key=value ...]
    python benchmarks/retriever_ablation.py --dataset ml-100k --out benchmarks/results/retriever-ablation-ml-100k

``--key=value`` settings apply to every variant (e.g. the backbone the table
was run with).

Every variant is the dataset's shipped settings (package yaml, dataset yaml,
``--config_files``) plus the overrides in ``VARIANTS``; it is trained with
early stopping on validation and **never tested** (``test=False``): the table
is for choosing, and test is read once, by ``--compare``, for the chosen
design only. Each run is written to ``<out>/runs/<variant>-seed<S>.json`` as it
finishes (a rerun skips finished runs whose overrides are unchanged, so the
script can be stopped and resumed; unlike ``--compare`` it does not compare
the resolved settings, so delete ``<out>/runs`` after a change of the
package's defaults to run every row again); ``<out>/ablation.md`` and ``ablation.json`` hold the table: valid
NDCG@10 (mean ± std over seeds when there are several), the change against
the shipped UR4Rec and the ablation, seconds per epoch and its ratio to the
ablation's (same process, one after the other), best epoch and epochs run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from ur4rec_recbole.io import machine, write_json, write_text  # noqa: E402

# (name, what it changes, overrides on top of the shipped settings); the first two are the references
VARIANTS: list[tuple[str, str, dict[str, str]]] = [
    ("ablation", "retriever off: SASRec on the same windows (`retriever_weight=0`, `fusion=none`)",
     {"retriever_weight": "0", "fusion": "none"}),
    ("UR4Rec", "the shipped design", {}),
    ("round-one design", "static queries, hard max, two-layer adapter, text only in the retriever",
     {"retriever_scoring": "proxies", "retriever_query": "proxies", "proxy_pooling": "max", "item_adapter": "mlp",
      "text_in_items": "False"}),
    # (a) queries
    ("static queries", "K learned queries, not conditioned on the sequence state", {"retriever_query": "proxies"}),
    # scoring (the shipped design: late interaction, each slot matched with the item)
    ("proxy scoring", "the item matched with the proxies' transformer read of the memory, mean over proxies "
     "(`retriever_scoring=proxies`)", {"retriever_scoring": "proxies"}),
    # (b) pooling (over proxies, under proxy scoring)
    ("max pooling", "proxy scoring, hard max over proxies", {"retriever_scoring": "proxies", "proxy_pooling": "max"}),
    ("logsumexp pooling", "proxy scoring, smooth max over proxies",
     {"retriever_scoring": "proxies", "proxy_pooling": "logsumexp"}),
    # (c) diversity
    ("diversity 0.1", "proxy scoring, proxy diversity loss, weight 0.1",
     {"retriever_scoring": "proxies", "diversity_weight": "0.1"}),
    # (d) knowledge texts
    ("no titles", "knowledge texts without the title column", {"item_text_fields": "NO_TITLE"}),
    # (e) adapters
    ("linear adapter", "one trainable linear map instead of the frozen projection", {"item_adapter": "linear"}),
    ("lowrank adapter", "rank-16 trainable map", {"item_adapter": "lowrank"}),
    # (f) text in the item representation
    ("no text in items", "text only in the retriever, not added to the ID embeddings", {"text_in_items": "False"}),
    ("text in items only", "no retriever score: the text only in the item table (`fusion=item_text`, "
     "`retriever_weight=0`); what the retriever adds is UR4Rec against this row",
     {"fusion": "item_text", "retriever_weight": "0"}),
    # memory and fusion
    ("no profile", "memory without the preference profile", {"use_profile": "False"}),
    ("query fusion", "proxy scoring; the mean proxy moves SASRec's query instead of a second score",
     {"retriever_scoring": "proxies", "fusion": "query"}),
    # training cost: the retriever on a share of each batch's windows
    ("retriever share 0.25", "the retriever scores a random quarter of each batch's windows in training, the rest "
     "train the sequence score alone (`retriever_share=0.25`)", {"retriever_share": "0.25"}),
    ("retriever share 0.1", "the same with a tenth (`retriever_share=0.1`)", {"retriever_share": "0.1"}),
    # (g) staging
    ("backbone first", "backbone alone (no text), then retriever and fusion on the frozen backbone",
     {"stages": "STAGED"}),
]


def title_free_fields(config) -> list[str]:
    """The dataset's knowledge fields without its title column(s) (``title``, ``movie_title``, ...)."""
    return [f for f in config["item_text_fields"] if "title" not in f]


def own_copy(base, out: Path, name: str) -> str:
    """A copy of the dataset's atomic files (and folder yaml) under ``out``, for a variant whose texts differ.

    Text and vector files are named by dataset and source only, so a variant
    with other knowledge fields would overwrite the shipped texts that runs
    in parallel read; on its own copy it writes its own. Returns the data_path.
    """
    source, target = Path(base["data_path"]), out / f"data-{name}" / base["dataset"]
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix in (".inter", ".item", ".user", ".yaml") and not (target / path.name).exists():
            shutil.copy2(path, target / path.name)
    return str(target.parent)


def resolve(overrides: dict[str, str], base, out: Path) -> dict[str, str]:
    """Fill the placeholders that depend on the dataset's settings."""
    resolved = dict(overrides)
    if resolved.get("item_text_fields") == "NO_TITLE":
        resolved["item_text_fields"] = str(title_free_fields(base))
        resolved["data_path"] = own_copy(base, out, "no-titles")
    if resolved.get("stages") == "STAGED":
        first = 20  # the ablation's best epoch is about 20 on amazon-office
        resolved["stages"] = str([
            {"name": "backbone", "epochs": first, "train": ["backbone"], "fusion": "none", "retriever_weight": 0},
            {"name": "retriever", "epochs": int(base["epochs"]) - first, "train": ["retriever", "fusion"]}])
    return resolved


def run_variant(dataset: str, config_files: list[str], overrides: dict[str, str], seed: int) -> dict:
    from ur4rec_recbole.run.single import run

    settings = {"seed": str(seed), "show_progress": "False", "state": "WARNING", **overrides}
    result = run("UR4Rec", dataset, config_files, cmd_overrides=settings, saved=False, test=False)
    return {key: result[key] for key in ("best_valid_result", "seconds_per_epoch", "best_epoch", "epochs_run",
                                         "train_seconds", "machine")} | {"overrides": overrides, "seed": seed}


def table(rows: list[dict]) -> str:
    lines = ["| variant | what changes | valid NDCG@10 | Δ vs UR4Rec | Δ vs ablation | s/epoch | × ablation s/epoch "
             "| best epoch | epochs run |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['what']} | {row['valid']} | {row['vs_ur4rec']} | {row['vs_ablation']} "
                     f"| {row['s_per_epoch']:.1f} | {row['time_ratio']:.2f} | {row['best_epoch']} | {row['epochs_run']} |")
    return "\n".join(lines)


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    def mean(name: str, key) -> float:
        return statistics.fmean(key(r) for r in results[name])

    ndcg = {name: mean(name, lambda r: r["best_valid_result"]["ndcg@10"]) for name in results}
    rows = []
    for name, what, _ in VARIANTS:
        if name not in results:
            continue
        values = [r["best_valid_result"]["ndcg@10"] for r in results[name]]
        shown = f"{ndcg[name]:.4f}" + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else "")
        rel = {ref: (f"{100 * (ndcg[name] / ndcg[ref] - 1):+.1f}%" if ref in ndcg and ref != name else "–")
               for ref in ("UR4Rec", "ablation")}
        speed = mean(name, lambda r: r["seconds_per_epoch"])
        rows.append({"name": name, "what": what, "valid": shown, "valid_mean": ndcg[name], "seeds": len(values),
                     "vs_ur4rec": rel["UR4Rec"], "vs_ablation": rel["ablation"], "s_per_epoch": speed,
                     "time_ratio": speed / mean("ablation", lambda r: r["seconds_per_epoch"]) if "ablation" in results
                     else float("nan"),
                     "best_epoch": f"{mean(name, lambda r: r['best_epoch']):.1f}",
                     "epochs_run": f"{mean(name, lambda r: r['epochs_run']):.1f}"})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--config_files", nargs="*", default=[])
    parser.add_argument("--seeds", default="2020", help="comma-separated seeds")
    parser.add_argument("--variants", default=None, help="comma-separated variant names (default: all)")
    parser.add_argument("--out", required=True, type=Path)
    args, rest = parser.parse_known_args(argv)
    fixed = dict(a[2:].split("=", 1) for a in rest if a.startswith("--") and "=" in a)  # every variant, e.g. --hidden_size=64

    from ur4rec_recbole.config import Config

    base = Config("UR4Rec", args.dataset, args.config_files, cmd_overrides=fixed)
    chosen = [v for v in VARIANTS if args.variants is None or v[0] in args.variants.split(",")]
    results: dict[str, list[dict]] = {}
    for name, _, overrides in chosen:
        for seed in (int(s) for s in args.seeds.split(",")):
            path = args.out / "runs" / f"{name.replace(' ', '-')}-seed{seed}.json"
            settings = {**fixed, **resolve(overrides, base, args.out)}
            if not path.is_file() or json.loads(path.read_text()).get("overrides") != settings:  # else reuse it
                write_json(path, run_variant(args.dataset, args.config_files, settings, seed))

            results.setdefault(name, []).append(json.loads(path.read_text()))
    rows = summarise(results)
    write_json(args.out / "ablation.json", {"dataset": args.dataset, "rows": rows, "machine": machine(),
                                             "command": " ".join(sys.argv)})
    write_text(args.out / "ablation.md", f"# Retriever ablation on {args.dataset} (validation NDCG@10)\n\n"
               + table(rows) + "\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
