"""Training steps with torch's dropout and with the same-mask dropout, in one run: time and identical losses.

    python benchmarks/dropout.py --dataset ml-100k
    python benchmarks/dropout.py --dataset amazon-office

For UR4Rec and its ablation (``retriever_weight=0``, ``fusion=none``) on the
dataset's shipped settings, the same ``--steps`` training batches are run
from the same seed with ``nn.Dropout`` layers (torch's CPU ``bernoulli_``)
and with ``SameMaskDropout`` (``model/dropout.py``), ``--repeats`` times,
alternating, so both see the same background. It reports seconds per step
(median over repeats), their ratio, and the largest gap between the two
kinds' losses at any step beside the largest gap between two runs of one
kind: threaded reductions may round differently from run to run, so "the
same training" means the first is no larger than the second.
Writes ``benchmarks/results/dropout-<dataset>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import ur4rec_recbole  # noqa: E402, F401  (first: sets the OpenMP waiting before torch loads)

ARMS = {"UR4Rec": {}, "UR4Rec, retriever off": {"retriever_weight": "0", "fusion": "none"}}


def run_steps(config, train_data, batches, torch_dropout: bool) -> tuple[float, list[float]]:
    """Seconds per step and the loss of every step, from the configured seed."""
    import torch
    from recbole.utils import init_seed

    from ur4rec_recbole.model.dropout import use_torch_dropout
    from ur4rec_recbole.run.prepare import build_model

    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, train_data._dataset).train()
    if torch_dropout:
        use_torch_dropout(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    losses = []
    start = perf_counter()
    for batch in batches:
        optimiser.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return (perf_counter() - start) / len(batches), losses


def measure(dataset: str, settings: dict, args: argparse.Namespace) -> dict:
    from recbole.data import data_preparation

    from ur4rec_recbole.run.prepare import prepare_run

    overrides = {**settings, "use_gpu": "False", "state": "WARNING", "show_progress": "False"}
    prepared = prepare_run("UR4Rec", dataset, cmd_overrides=overrides)
    config = prepared.config
    train_data, _, _ = data_preparation(config, prepared.dataset)
    batches = []
    for batch in train_data:
        batches.append(batch)
        if len(batches) == args.steps + 1:
            break
    run_steps(config, train_data, batches[:1], torch_dropout=False)  # warm-up
    seconds = {"torch": [], "same-mask": []}
    runs = []  # per repeat: each kind's losses
    for _ in range(args.repeats):
        losses = {}
        for kind in seconds:
            step, losses[kind] = run_steps(config, train_data, batches[1:], torch_dropout=kind == "torch")
            seconds[kind].append(step)
        runs.append(losses)
    gap = lambda a, b: max(abs(x - y) for x, y in zip(a, b))  # noqa: E731
    across = [gap(r["torch"], r["same-mask"]) for r in runs]  # torch's dropout against ours, same repeat
    within = [gap(r[k], runs[0][k]) for r in runs[1:] for k in r]  # one kind against itself: the noise floor
    torch_s, same_s = (statistics.median(seconds[k]) for k in ("torch", "same-mask"))
    return {"settings": settings, "train_batch_size": config["train_batch_size"], "steps": args.steps,
            "seconds_per_step": seconds, "torch_s": torch_s, "same_mask_s": same_s, "ratio": same_s / torch_s,
            "loss_gap_torch_vs_same_mask": across, "loss_gap_same_kind_repeats": within,
            "first_step_losses": {k: v[0] for k, v in runs[0].items()}}


def markdown(result: dict) -> str:
    lines = [f"{result['dataset']}: {result['steps']} training steps per pass, {result['repeats']} alternating "
             f"repeats ({result['machine']['cpu_count']} cores, {result['machine']['torch_threads']} torch threads, "
             f"GPU: {result['machine']['cuda'] or 'none'}):", "",
             "| model | batch | torch dropout ms/step | same-mask dropout ms/step | ratio "
             "| max loss gap, torch vs same-mask | max loss gap, one kind rerun |",
             "|---|---|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['train_batch_size']} | {row['torch_s'] * 1e3:.1f} | "
                     f"{row['same_mask_s'] * 1e3:.1f} | {row['ratio']:.2f} | "
                     f"{max(row['loss_gap_torch_vs_same_mask']):.1e} | "
                     f"{max(row['loss_gap_same_kind_repeats'], default=0):.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    from ur4rec_recbole.io import machine, write_json, write_text
    from ur4rec_recbole.model.dropout import uniform_draws_are_bernoulli_draws

    rows = {}
    for name, settings in ARMS.items():
        print(f"-- {name}", flush=True)
        rows[name] = measure(args.dataset, settings, args)
    output = args.output or Path(__file__).parent / "results" / f"dropout-{args.dataset}.json"
    result = {"dataset": args.dataset, "steps": args.steps, "repeats": args.repeats,
              "fast_path": uniform_draws_are_bernoulli_draws(), "torch": torch.__version__,
              "command": " ".join(["python", *(sys.argv if argv is None else ["benchmarks/dropout.py", *argv])]),
              "machine": machine(), "rows": rows}
    write_json(output, result)
    table = markdown(result)
    write_text(output.with_suffix(".md"), table)
    print(table)
    return result


if __name__ == "__main__":
    main()
