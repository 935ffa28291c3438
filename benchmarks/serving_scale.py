"""Serving the two stages (``two_stage: True``) on a synthetic catalogue of up to a million items.

    python benchmarks/serving_scale.py --items 1000000 --output benchmarks/results/serving-1m.json

Builds UR4Rec with the shipped settings plus ``two_stage: True`` on N items
with random unit 384-d knowledge vectors and random training histories
(``catalogue.py``'s ``SyntheticCatalogue``: 2,000 users x 50 items), weights
as initialised (the trained shapes; timings do not depend on the values).
Then, per known user (history of 50, their preference vector), top-10 is
timed in two parts:

- ``candidates``: the sequence state, the backbone's top ranks from
  ``--index`` (``faiss``: an HNSW graph over the item table, built once per
  weights and timed apart; ``exact``: the chunked product over the whole
  table), and the merge with text neighbours and transitions;
- ``rerank``: the preference retriever and the fusion over the M candidates,
  and their top-10.

Single users (``--users`` timed requests) give p50/p99 per request; batches
of ``--batch`` give users per second. ``candidate_recall`` is the share of
the exact backbone top ranks (the same depth, by the exact product over the
whole catalogue) that the index returns, and ``list_recall`` the share of
the candidate lists built from the exact ranking that the served lists hold.
Text neighbour rows are computed on first use and cached: the untimed
warm-up pass over the timed users fills them, as a server's cache would be
(``text_cache_fill_ms``: that pass's time per user).

Evaluation at this size: ``--eval_users`` users get the two-stage rank of a
random target with ``candidates.two_stage_ranks``, which reads the catalogue
in chunks of ``--chunk`` items, so memory is ``users x chunk`` scores
whatever N (``eval_seconds``, and ``peak_memory_mb`` covers it).
``peak_memory_mb`` is the process's peak resident memory (model, index,
tables included).
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path
from time import perf_counter

import numpy as np

import ur4rec_recbole  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from catalogue import LENGTH, USERS, SyntheticCatalogue  # noqa: E402

from ur4rec_recbole.io import machine, write_result_files  # noqa: E402
from ur4rec_recbole.model.candidates import BackboneIndex, exact_top, recent_items, two_stage_ranks  # noqa: E402

TOP_K = 10


def build(n_items: int, count: int, gpu: bool):
    from recbole.utils import init_seed

    from ur4rec_recbole.config import Config
    from ur4rec_recbole.model import UR4Rec
    from ur4rec_recbole.run.prepare import set_torch_threads

    config = Config("UR4Rec", "synthetic-catalogue", config_dict={
        "two_stage": True, "candidate_count": count, "MAX_ITEM_LIST_LENGTH": LENGTH, "state": "WARNING",
        "unseen_item_neighbours": 0,  # (random histories leave most items unseen; borrowing is not what is timed)
        "use_gpu": gpu})
    set_torch_threads(config["torch_threads"])
    init_seed(2020, False)
    return UR4Rec(config, SyntheticCatalogue(config, n_items)).to(config["device"]).eval()


def requests(n_items: int, users: int, seed: int = 3):
    """Known users (ids 1..USERS-1) with a random history of LENGTH items each."""
    gen = torch.Generator().manual_seed(seed)
    user = torch.randint(1, USERS, (users,), generator=gen)
    return user, torch.randint(1, n_items, (users, LENGTH), generator=gen), torch.full((users,), LENGTH)


class Server:
    """The two stages for a batch of known users, timed apart."""

    def __init__(self, model, index: BackboneIndex) -> None:
        self.model, self.index = model, index
        with torch.no_grad():
            self.views, self.table = model.item_views(), model.item_table()
        self.depth = model.candidate_stage.backbone_depth

    @torch.no_grad()
    def candidates(self, users, item_seq, lengths):
        state = self.model.gather_indexes(self.model.sequence_states(item_seq, self.table), lengths - 1)  # [B, H]
        backbone = self.index.top(state, self.depth).to(state.device)  # [B, depth]
        recent = recent_items(item_seq, lengths - 1, self.model.candidate_stage.settings.text_window)
        return state, self.model.candidate_stage.lists(backbone, recent).items  # [B, M]

    @torch.no_grad()
    def rerank(self, users, item_seq, lengths, state, cands):
        profile, valid = self.model.profile_of(users)
        fused = self.model.rerank(state, cands, item_seq, lengths, profile, valid, self.views, self.table)[2]
        return cands.gather(1, fused.topk(TOP_K, dim=1).indices).cpu()  # [B, 10] (.cpu(): waits for a GPU)


def timed(server: Server, users, seqs, lengths, batch: int, desc: str):
    """Per call: (candidate seconds, rerank seconds), calls of ``batch`` users."""
    out = []
    for i in tqdm(range(0, len(users), batch), desc=desc, leave=False):
        part = slice(i, i + batch)
        start = perf_counter()
        state, cands = server.candidates(users[part], seqs[part], lengths[part])
        if cands.is_cuda:
            torch.cuda.synchronize()
        middle = perf_counter()
        server.rerank(users[part], seqs[part], lengths[part], state, cands)
        out.append((middle - start, perf_counter() - middle))
    return np.array(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, required=True, help="JSON path; a .md table is written beside it")
    parser.add_argument("--index", choices=("faiss", "exact"), default="faiss",
                        help="the backbone source: faiss HNSW (default) or the exact chunked product")
    parser.add_argument("--ef_search", type=int, default=512, help="HNSW search breadth (recall against time)")
    parser.add_argument("--count", type=int, default=100, help="candidate_count M")
    parser.add_argument("--gpu", action="store_true", help="model on the GPU (with --index exact: the product there)")
    parser.add_argument("--users", type=int, default=200, help="timed single-user requests")
    parser.add_argument("--batch", type=int, default=256, help="users per batched call")
    parser.add_argument("--batches", type=int, default=4, help="timed batched calls")
    parser.add_argument("--eval_users", type=int, default=256, help="users ranked by the chunked evaluation")
    parser.add_argument("--chunk", type=int, default=1 << 16, help="items per chunk of the evaluation")
    args = parser.parse_args(argv)

    start = perf_counter()
    model = build(args.items, args.count, args.gpu)
    device = next(model.parameters()).device
    build_seconds = perf_counter() - start
    start = perf_counter()
    with torch.no_grad():
        table = model.item_table()
    index = BackboneIndex(table, args.index, ef_search=args.ef_search)
    index_seconds = perf_counter() - start
    server = Server(model, index)

    count = max(args.users, args.batch * args.batches, args.eval_users)
    users, seqs, lengths = (t.to(device) for t in requests(args.items, count))
    one = slice(0, args.users)
    start = perf_counter()
    timed(server, users[one], seqs[one], lengths[one], 1, "warm-up (fills the text cache)")
    cache_ms = 1000 * (perf_counter() - start) / args.users
    single = timed(server, users[one], seqs[one], lengths[one], 1, "single users") * 1000  # ms
    many = slice(0, args.batch * args.batches)
    timed(server, users[: args.batch], seqs[: args.batch], lengths[: args.batch], args.batch, "warm-up (batch)")
    batched = timed(server, users[many], seqs[many], lengths[many], args.batch, "batches")

    # recall against exact full scoring at the same depth, and the lists built from it
    with torch.no_grad():
        sample = slice(0, min(args.users, 200))
        state, served = server.candidates(users[sample], seqs[sample], lengths[sample])
        approx = index.top(state, server.depth)
        exact = exact_top(state, server.table, server.depth)[1]
        recall = np.mean([len(set(a.tolist()) & set(e.tolist())) / server.depth for a, e in zip(approx, exact)])
        recent = recent_items(seqs[sample], lengths[sample] - 1, model.candidate_stage.settings.text_window)
        exact_lists = model.candidate_stage.lists(exact, recent).items
        list_recall = np.mean([len(set(a.tolist()) & set(e.tolist())) / args.count
                               for a, e in zip(served, exact_lists)])

        # chunked evaluation: two-stage ranks of random targets over the whole catalogue
        ev = slice(0, min(args.eval_users, len(users)))
        start = perf_counter()
        state = model.gather_indexes(model.sequence_states(seqs[ev], server.table), lengths[ev] - 1)
        recent = recent_items(seqs[ev], lengths[ev] - 1, model.candidate_stage.settings.text_window)
        cands = model.candidate_stage.lists(exact_top(state, server.table, server.depth)[1], recent).items
        profile, valid = model.profile_of(users[ev])
        fused = model.rerank(state, cands, seqs[ev], lengths[ev], profile, valid, server.views, server.table)[2]
        targets = torch.randint(1, args.items, (len(cands),), generator=torch.Generator().manual_seed(5)).to(device)
        ranks = two_stage_ranks(state, server.table, targets, cands, fused, chunk_items=args.chunk)
        eval_seconds = perf_counter() - start

    total = single.sum(1)
    result = {
        "items": args.items, "device": str(device), "index": args.index, "ef_search": args.ef_search,
        "candidate_count": args.count, "history": LENGTH,
        "command": " ".join(["python", *sys.argv]), "machine": machine(),
        "build_seconds": build_seconds, "index_seconds": index_seconds, "text_cache_fill_ms": cache_ms,
        "p50_ms": float(np.percentile(total, 50)), "p99_ms": float(np.percentile(total, 99)),
        "candidates_p50_ms": float(np.percentile(single[:, 0], 50)),
        "candidates_p99_ms": float(np.percentile(single[:, 0], 99)),
        "rerank_p50_ms": float(np.percentile(single[:, 1], 50)),
        "rerank_p99_ms": float(np.percentile(single[:, 1], 99)),
        "batch": args.batch, "users_per_second": float(args.batch * len(batched) / batched.sum()),
        "batch_candidates_ms": float(1000 * batched[:, 0].mean()),
        "batch_rerank_ms": float(1000 * batched[:, 1].mean()),
        "candidate_recall": float(recall), "list_recall": float(list_recall),
        "eval_users": len(ranks), "eval_chunk_items": args.chunk, "eval_seconds": eval_seconds,
        "eval_mean_rank": float(ranks.float().mean()),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    lines = [f"Two-stage serving, {args.items:,} items, M = {args.count}, index {args.index} "
             f"({result['machine']['cpu_count']} cores, {result['machine']['torch_threads']} torch threads):", "",
             "| p50 ms | p99 ms | candidates p50 ms | rerank p50 ms | users/s (batch) | candidate recall "
             "| list recall | peak MB |", "|---|---|---|---|---|---|---|---|",
             f"| {result['p50_ms']:.2f} | {result['p99_ms']:.2f} | {result['candidates_p50_ms']:.2f} "
             f"| {result['rerank_p50_ms']:.2f} | {result['users_per_second']:.0f} | {recall:.3f} | {list_recall:.3f} "
             f"| {result['peak_memory_mb']:.0f} |"]
    write_result_files(args.output, result, "\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
