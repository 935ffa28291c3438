"""Where a two-stage training step's time goes, against one-stage UR4Rec and its ablation, on the same batches.

    python benchmarks/two_stage_profile.py --dataset ml-100k --batches 5

Builds the ablation (``fusion: none``, ``retriever_weight: 0``), UR4Rec and UR4Rec with ``two_stage: True``
(seed 1), runs one warm-up step and then ``--batches`` forward+backward passes on the same training
batches, and prints per model the total seconds, the forward seconds, and for two_stage the seconds inside
``candidate_lists`` (the candidate stage), ``_proxies`` (the retriever's attention over the memory) and
``retriever_scores_at`` (the retriever's scores of the lists).
"""

from __future__ import annotations

import argparse
import functools
import time

import ur4rec_recbole  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
from recbole.data import data_preparation
from recbole.utils import init_seed

from ur4rec_recbole.run.prepare import build_model, prepare_run

MODELS = (("ablation", {"fusion": "none", "retriever_weight": "0"}), ("UR4Rec", {}),
          ("two_stage", {"two_stage": "True"}))
TIMED = ("candidate_lists", "_proxies", "retriever_scores_at")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args(argv)
    batches = None
    for name, settings in MODELS:
        prepared = prepare_run("UR4Rec", args.dataset,
                               cmd_overrides={**settings, "state": "WARNING", "show_progress": "False"})
        train = data_preparation(prepared.config, prepared.dataset)[0]
        init_seed(1, True)
        model = build_model(prepared.config, train._dataset).train()
        if batches is None:
            batches = [b for _, b in zip(range(args.batches + 1), train)]
        spent: dict[str, float] = {}
        for method in TIMED if settings.get("two_stage") else ():
            def timed(*a, _fn=getattr(model, method), _name=method, **k):
                start = time.perf_counter()
                out = _fn(*a, **k)
                spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - start
                return out
            setattr(model, method, functools.wraps(getattr(model, method))(timed))
        model.calculate_loss(batches[0]).backward()
        spent.clear()
        start, forward = time.perf_counter(), 0.0
        for batch in batches[1:]:
            step = time.perf_counter()
            loss = model.calculate_loss(batch)
            forward += time.perf_counter() - step
            loss.backward()
        print(f"{name}: total {time.perf_counter() - start:.2f} s, forward {forward:.2f} s",
              {k: round(v, 2) for k, v in spent.items()}, flush=True)


if __name__ == "__main__":
    main()
