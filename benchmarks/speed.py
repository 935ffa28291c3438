"""Training and inference speed of UR4Rec against RecBole's SASRec, in one process.

    python benchmarks/speed.py --dataset ml-100k

Training: one epoch each of UR4Rec (shipped settings), UR4Rec with the
retriever off (``fusion: none``, ``retriever_weight: 0``: the retriever's own
cost is the difference), UR4Rec with the retriever on a tenth of each batch's
windows (``retriever_share: 0.1``), UR4Rec reranking candidate lists (``two_stage: True``,
docs/guides/two-stage.md) and RecBole's SASRec, timed around RecBole's
``_train_epoch``; the ratios are to SASRec and to the retriever-off run.
Inference, on the model after that epoch: full-catalogue scoring plus top-10 of
the test users, one user per call (latency p50/p99) and 256 users per call
(throughput), on the CPU (``--gpu``: on the GPU). Writes ``benchmarks/results/speed-<dataset>.json``
and a markdown table (``.md``) next to it, and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from time import perf_counter

import numpy as np

import ur4rec_recbole  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed
from tqdm import tqdm

from ur4rec_recbole.io import machine, write_result_files
from ur4rec_recbole.registry import get_trainer
from ur4rec_recbole.run.prepare import build_model, prepare_run

VARIANTS = (  # (row name, model, settings)
    ("UR4Rec", "UR4Rec", {}),
    ("UR4Rec, retriever off", "UR4Rec", {"fusion": "none", "retriever_weight": "0"}),
    ("UR4Rec, retriever_share 0.1", "UR4Rec", {"retriever_share": "0.1"}),
    ("UR4Rec, two_stage", "UR4Rec", {"two_stage": "True"}),
    ("SASRec", "SASRec", {}),
)
INFERENCE = ("UR4Rec", "UR4Rec, two_stage", "SASRec")
TOP_K = 10


@torch.no_grad()
def latency(model, rows, users: int, warmup: int = 5) -> list[float]:
    """Seconds per call of full-catalogue scoring + top-k for one user at a time."""
    times = []
    for i in tqdm(range(warmup + users), desc="latency (batch 1)", leave=False):
        one = rows[i % len(rows): i % len(rows) + 1]
        start = perf_counter()
        torch.topk(model.full_sort_predict(one), TOP_K, dim=-1).indices.cpu()  # .cpu(): wait for a GPU
        if i >= warmup:
            times.append(perf_counter() - start)
    return times


@torch.no_grad()
def throughput(model, rows, batch: int) -> float:
    """Users per second scored (+ top-k) in batches of ``batch``, over all test users."""
    torch.topk(model.full_sort_predict(rows[:batch]), TOP_K, dim=-1)  # warm-up
    start = perf_counter()
    for i in tqdm(range(0, len(rows), batch), desc=f"throughput (batch {batch})", leave=False):
        torch.topk(model.full_sort_predict(rows[i: i + batch]), TOP_K, dim=-1).indices.cpu()
    return len(rows) / (perf_counter() - start)


def measure(name: str, model_name: str, settings: dict, dataset: str, args: argparse.Namespace) -> dict:
    overrides = {**settings, "use_gpu": str(args.gpu), "state": "WARNING", "show_progress": "False"}
    prepared = prepare_run(model_name, dataset, cmd_overrides=overrides)
    config = prepared.config
    train_data, _, test_data = data_preparation(config, prepared.dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    start = perf_counter()
    trainer._train_epoch(train_data, 0, show_progress=True)
    row = {"name": name, "model": model_name, "settings": settings, "epoch_seconds": perf_counter() - start,
           "train_rows": len(train_data._dataset), "train_batch_size": config["train_batch_size"]}
    if name in INFERENCE:
        model.eval()
        rows = test_data._dataset.inter_feat.to(config["device"])  # one row per test user
        times = latency(model, rows, args.latency_users)
        row.update({
            "latency_users": len(times),
            "latency_p50_ms": 1000 * float(np.percentile(times, 50)),
            "latency_p99_ms": 1000 * float(np.percentile(times, 99)),
            "batch": args.batch,
            "users_per_second": throughput(model, rows, args.batch),
            "test_users": len(rows),
            "items": test_data._dataset.item_num,
        })
    return row


def markdown(result: dict) -> str:
    rows = result["rows"]
    sasrec = next((r["epoch_seconds"] for r in rows if r["name"] == "SASRec"), float("nan"))  # nan: not run
    off = next((r["epoch_seconds"] for r in rows if r["name"] == "UR4Rec, retriever off"), float("nan"))
    where = result["machine"]
    lines = [
        f"Training, one epoch on {result['dataset']} ({where['cpu_count']} cores, "
        f"{where['torch_threads']} torch threads, GPU: {where['cuda'] or 'none'}):",
        "",
        "| model | training rows | batch | epoch s | × SASRec | × retriever off |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['train_rows']} | {r['train_batch_size']} | {r['epoch_seconds']:.1f} "
                     f"| {r['epoch_seconds'] / sasrec:.3f} | {r['epoch_seconds'] / off:.2f} |")
    lines += [
        "",
        f"Inference on the {'GPU' if where['cuda'] and result.get('gpu') else 'CPU'}: scoring all items and "
        f"taking the top {TOP_K}, test users:",
        "",
        "| model | items | latency p50 ms (batch 1) | latency p99 ms (batch 1) | users/s (batch 256) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "latency_p50_ms" in r:
            lines.append(f"| {r['name']} | {r['items']} | {r['latency_p50_ms']:.2f} | {r['latency_p99_ms']:.2f} "
                         f"| {r['users_per_second']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--latency-users", type=int, default=300, help="timed batch-1 calls")
    parser.add_argument("--batch", type=int, default=256, help="users per call for throughput")
    parser.add_argument("--gpu", action="store_true", help="train and infer on the GPU (default: the CPU)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (default benchmarks/results/speed-<dataset>.json); .md beside it")
    parser.add_argument("--variants", default=";".join(name for name, _, _ in VARIANTS),
                        help="rows to measure, names separated by ; (default: all)")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.variants.split(";")]
    unknown = sorted(set(wanted) - {name for name, _, _ in VARIANTS})
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {[name for name, _, _ in VARIANTS]}")
    output = args.output or Path(__file__).parent / "results" / f"speed-{args.dataset}.json"
    rows = [measure(name, model, settings, args.dataset, args) for name, model, settings in VARIANTS
            if name in wanted]
    result = {"dataset": args.dataset, "gpu": args.gpu, "command": " ".join(["python", *sys.argv]), "machine": machine(),
              "rows": rows}
    write_result_files(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
