"""Training step time and peak memory against catalogue size, full and sampled softmax.

    python benchmarks/catalogue.py                       # 10k, 100k, 1M items; CPU unless a GPU is visible

UR4Rec (shipped settings: weighted fusion, retriever InfoNCE) trains on a
synthetic catalogue of N items with random 384-d knowledge vectors and random
histories (64 windows of 50 items per batch, a loss on the last 10 positions
of each: 640 loss positions, as ml-100k's full windows). Each (N, train_negatives)
runs in its own process: after ``--warmup`` steps, ``--steps`` optimiser steps
are timed; peak memory is the process's peak resident memory (CPU) or
``torch.cuda.max_memory_allocated`` (GPU). Full softmax scores every item for
every position (the retriever's cosine alone is a ``[P, K, N]`` tensor), so it
gets ``--full_steps`` steps and is skipped where its estimated memory exceeds
``--memory_gb``. Writes ``benchmarks/results/catalogue[-gpu].json`` and ``.md``.

Evaluation stays exact: ``full_sort_predict`` scores the whole catalogue for
``eval_batch_size`` users at once, so its memory is about
``eval_batch_size x N x (K + 1) x 4`` bytes (the ``[B, K, N]`` cosines and the
``[B, N]`` scores); at 1M items and K = 4 that is 20 MB per user, so
``eval_batch_size`` must come down to ~256 (5 GB) from RecBole's 4096.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from time import perf_counter

import ur4rec_recbole  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)

TEXT_DIM, USERS, BATCH, LENGTH, STRIDE, PROXIES = 384, 2000, 64, 50, 10, 4
MODES = ("none", "uniform", "in_batch")


class SyntheticCatalogue:
    """What UR4Rec reads from a RecBole dataset: sizes, aligned feature tables, training histories."""

    def __init__(self, config, n_items: int) -> None:
        import torch

        from ur4rec_recbole.features import FeatureSet

        generator = torch.Generator().manual_seed(0)
        self.n_items, self.item_field = n_items, config["ITEM_ID_FIELD"]
        item_text = torch.nn.functional.normalize(torch.randn(n_items, TEXT_DIM, generator=generator), dim=-1)
        user_text = torch.nn.functional.normalize(torch.randn(USERS, TEXT_DIM, generator=generator), dim=-1)
        # one profile per user, written from the whole portion (cut-off 0: read at every position)
        profile_text = torch.cat([torch.zeros(1, TEXT_DIM), user_text])  # row 0: no profile
        self.features = FeatureSet(item_text, torch.ones(n_items, dtype=torch.bool), profile_text,
                                   torch.arange(1, USERS + 1)[:, None], torch.zeros(USERS, 1, dtype=torch.long))
        self.training_histories = {u: torch.randint(1, n_items, (LENGTH,), generator=generator).numpy()
                                   for u in range(USERS)}

    def num(self, field: str) -> int:
        return self.n_items if field == self.item_field else USERS


def batches(config, n_items: int, count: int, device):
    """``count`` random training batches of full windows, as UR4RecDataset builds them."""
    import torch
    from recbole.data.interaction import Interaction

    from ur4rec_recbole.data.dataset import HISTORY_START, TRAIN_FROM

    generator = torch.Generator().manual_seed(1)
    for _ in range(count):
        yield Interaction({
            config["USER_ID_FIELD"]: torch.randint(1, USERS, (BATCH,), generator=generator),
            config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]: torch.randint(1, n_items, (BATCH, LENGTH),
                                                                            generator=generator),
            config["ITEM_LIST_LENGTH_FIELD"]: torch.full((BATCH,), LENGTH),
            config["ITEM_ID_FIELD"]: torch.randint(1, n_items, (BATCH,), generator=generator),
            TRAIN_FROM: torch.full((BATCH,), LENGTH - STRIDE),
            HISTORY_START: torch.zeros(BATCH, dtype=torch.long),  # each window starts its portion
        }).to(device)


def worker(n_items: int, mode: str, steps: int, warmup: int, count: int, scoring: str | None = None) -> dict:
    import torch
    from recbole.utils import init_seed

    from ur4rec_recbole.config import Config
    from ur4rec_recbole.model import UR4Rec
    from ur4rec_recbole.run.prepare import autograd_without_anomaly_checks, set_torch_threads
    from ur4rec_recbole.training.optimizers import with_sparse_parameters

    config = Config("UR4Rec", "synthetic-catalogue", config_dict={
        "train_negatives": mode, "train_negatives_count": count, "MAX_ITEM_LIST_LENGTH": LENGTH,
        "n_proxies": PROXIES, "train_batch_size": BATCH, "state": "WARNING",
        **({"retriever_scoring": scoring} if scoring else {})})
    set_torch_threads(config["torch_threads"])
    autograd_without_anomaly_checks()
    cuda = config["device"].type == "cuda"
    init_seed(2020, False)
    model = UR4Rec(config, SyntheticCatalogue(config, n_items)).to(config["device"]).train()
    # as the trainer builds it: Adam, and lazy Adam for the item embedding under sampled negatives
    optimizer = with_sparse_parameters(model, lambda params: torch.optim.Adam(params, lr=config["learning_rate"]),
                                       config["learning_rate"])
    data = list(batches(config, n_items, steps + warmup, config["device"]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB (ru_maxrss is in KiB)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**30
    start = None
    for i, batch in enumerate(data):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize()
            start = perf_counter()
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    row = {"items": n_items, "train_negatives": mode, "train_negatives_count": count if mode == "uniform" else None,
           "steps": steps, "seconds_per_step": seconds, "peak_rss_gib": peak, "rss_before_steps_gib": before,
           "device": str(config["device"])}
    if cuda:
        row.update(peak_gpu_gib=torch.cuda.max_memory_allocated() / 2**30, gpu_before_steps_gib=base)
    return row


def full_softmax_gib(n_items: int) -> float:
    """Rough training memory of the full softmax: [P, K, N] cosines and [P, N] logits, kept for backward."""
    positions = BATCH * STRIDE
    return positions * n_items * (3 * PROXIES + 6) * 4 / 2**30


def markdown(result: dict) -> str:
    where = result["machine"]
    device = where["cuda"] or f"CPU, {where['cpu_count']} cores, {where['torch_threads']} torch threads"
    memory = "peak GPU GiB" if where["cuda"] else "peak RSS GiB"
    lines = [f"UR4Rec training steps on synthetic catalogues ({BATCH} windows x {STRIDE} loss positions per step, "
             f"{device}):", "",
             f"| items | train_negatives | steps timed | s/step | × s/step at {result['rows'][0]['items']:,} items | {memory} |",
             "|---|---|---|---|---|---|"]
    first = {}
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['items']:,} | {r['train_negatives']} | – | not run: {r['skipped']} | – | – |")
            continue
        first.setdefault(r["train_negatives"], r["seconds_per_step"])
        mode = r["train_negatives"] + (f" ({r['train_negatives_count']})" if r["train_negatives_count"] else "")
        peak = r.get("peak_gpu_gib", r["peak_rss_gib"])
        lines.append(f"| {r['items']:,} | {mode} | {r['steps']} | {r['seconds_per_step']:.3f} "
                     f"| {r['seconds_per_step'] / first[r['train_negatives']]:.2f} | {peak:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--steps", type=int, default=200, help="timed steps with sampling")
    parser.add_argument("--full_steps", type=int, default=10, help="timed steps of the full softmax")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--count", type=int, default=1024, help="train_negatives_count of uniform")
    parser.add_argument("--memory_gb", type=float, default=12.0, help="skip full softmax above this estimate")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--retriever_scoring", default=None, help="slots | proxies (default: the shipped one)")
    parser.add_argument("--worker", nargs=3, metavar=("ITEMS", "MODE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        items, mode, steps = args.worker
        print("RESULT " + json.dumps(worker(int(items), mode, int(steps), args.warmup, args.count,
                                            args.retriever_scoring)), flush=True)
        return None

    import torch

    from ur4rec_recbole.io import machine, write_result_files

    rows = []
    for n_items in args.items:
        for mode in args.modes:
            if mode == "none" and full_softmax_gib(n_items) > args.memory_gb:
                rows.append({"items": n_items, "train_negatives": mode, "train_negatives_count": None,
                             "skipped": f"~{full_softmax_gib(n_items):.0f} GiB estimated > --memory_gb {args.memory_gb:g}"})
                print(rows[-1], flush=True)
                continue
            steps = args.full_steps if mode == "none" else args.steps
            command = [sys.executable, __file__, "--worker", str(n_items), mode, str(steps),
                       "--warmup", str(args.warmup), "--count", str(args.count),
                       *(["--retriever_scoring", args.retriever_scoring] if args.retriever_scoring else [])]
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode or not line:
                rows.append({"items": n_items, "train_negatives": mode, "train_negatives_count": None,
                             "skipped": f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"})
            else:
                rows.append(json.loads(line[-1][7:]))
            print(rows[-1], flush=True)
    gpu = "-gpu" if torch.cuda.is_available() else ""
    output = args.output or Path(__file__).parent / "results" / f"catalogue{gpu}.json"
    result = {"command": " ".join(["python", *sys.argv]) if argv is None else " ".join(argv),
              "machine": machine(), "rows": rows}
    write_result_files(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
