"""Text encoding speed before and after, with the vectors compared, in one run.

    python benchmarks/encoding.py --dataset amazon-office      # dataset/amazon-office/ (README, "Speed")

Builds the dataset's template texts (item knowledge and user preferences,
written from the training split as every run does) and encodes each set
``--repeats`` times with both methods, alternating, so that load from other
processes hits both alike:

- **before**: what the package did until now, ``SentenceTransformer.encode``
  with batches of 128 texts in fp32;
- **after**: :func:`ur4rec_recbole.features.text_vectors.encode_texts` with the
  dataset's configured settings (length-sorted batches within a token budget,
  ``encoder_precision``, ``encoder_max_length``).

Reports texts/s of each (median over repeats, and the spread of the per-repeat
speed-ups) and the min/mean cosine between each text's two vectors. Writes
``benchmarks/results/encoding-<dataset>[-gpu].json`` and ``.md`` beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from time import perf_counter

import numpy as np

import ur4rec_recbole  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch

from ur4rec_recbole.features.text_vectors import _load, encode_texts, resolve_device, resolve_precision
from ur4rec_recbole.io import machine, write_result_files
from ur4rec_recbole.run.prepare import prepare_run
from ur4rec_recbole.texts.build import build_texts
from ur4rec_recbole.texts.records import read_records

BEFORE_BATCH = 128  # encoder_batch_size until now, through SentenceTransformer.encode


def dataset_texts(dataset: str, config_files: list[str], overrides: dict) -> tuple[dict, object]:
    """The template texts of ``dataset`` by kind (``item_know``, ``user_pref``), and the config."""
    prepared = prepare_run("UR4Rec", dataset, config_files, cmd_overrides={"state": "WARNING", **overrides})
    _, portions = prepared.dataset.split_with_portions()
    user_path, item_path = build_texts(prepared.config, prepared.dataset, portions)
    texts = {kind: [r.text for _, r in sorted(read_records(path).items())]
             for kind, path in (("item_know", item_path), ("user_pref", user_path))}
    return texts, prepared.config


def before(texts: list[str], encoder: str, device: str) -> np.ndarray:
    model = _load(encoder, device)
    model.max_seq_length = model.own_max_seq_length
    return model.encode(texts, batch_size=BEFORE_BATCH, show_progress_bar=True, convert_to_numpy=True,
                        normalize_embeddings=True)


def after(texts: list[str], config, device: str) -> np.ndarray:
    return encode_texts(texts, config["text_encoder"], device, config["encoder_precision"],
                        config["encoder_max_length"], config["encoder_batch_tokens"], config["encoder_batch_size"])


def timed(fn, *args) -> tuple[np.ndarray, float]:
    """``fn(*args)`` and its wall seconds (GPU work finished)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = perf_counter()
    out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, perf_counter() - start


def measure(texts: dict[str, list[str]], config, device: str, repeats: int) -> list[dict]:
    encoder = config["text_encoder"]
    after(texts["user_pref"][:64], config, device)  # load the model and warm both paths up
    before(texts["user_pref"][:64], encoder, device)
    rows = []
    for kind, batch in texts.items():
        times = {"before": [], "after": []}
        for r in range(repeats):
            print(f"{kind}: repeat {r + 1}/{repeats}", flush=True)
            ref, seconds = timed(before, batch, encoder, device)
            times["before"].append(seconds)
            new, seconds = timed(after, batch, config, device)
            times["after"].append(seconds)
        cosine = (np.asarray(ref, dtype=np.float64) * np.asarray(new, dtype=np.float64)).sum(1)
        lengths = [len(ids) for ids in _load(encoder, device).tokenizer(batch)["input_ids"]]
        speedups = np.divide(times["before"], times["after"])
        rows.append({
            "texts": kind, "count": len(batch), "mean_wordpieces": float(np.mean(lengths)),
            "over_max_length": int(sum(n > _load(encoder, device).own_max_seq_length for n in lengths)),
            "seconds_before": times["before"], "seconds_after": times["after"],
            "texts_per_s_before": len(batch) / float(np.median(times["before"])),
            "texts_per_s_after": len(batch) / float(np.median(times["after"])),
            "speedup_median": float(np.median(speedups)), "speedup_min": float(speedups.min()),
            "speedup_max": float(speedups.max()),
            "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
        })
    total_before = sum(r["count"] / r["texts_per_s_before"] for r in rows)
    total_after = sum(r["count"] / r["texts_per_s_after"] for r in rows)
    count = sum(r["count"] for r in rows)
    rows.append({"texts": "all", "count": count, "texts_per_s_before": count / total_before,
                 "texts_per_s_after": count / total_after, "speedup_median": total_before / total_after,
                 "cosine_min": min(r["cosine_min"] for r in rows),
                 "cosine_mean": sum(r["cosine_mean"] * r["count"] for r in rows) / count})
    return rows


def markdown(result: dict) -> str:
    where, s = result["machine"], result["settings"]
    lines = [
        f"Encoding the {result['dataset']} template texts with {s['text_encoder']} on {result['device']} "
        f"({where['cpu_count']} cores, {where['torch_threads']} torch threads, GPU: {where['cuda'] or 'none'}); "
        f"before: SentenceTransformer.encode, batches of {BEFORE_BATCH}, fp32; after: precision "
        f"{s['precision']}, max length {s['max_length']}, batches of <= {s['encoder_batch_tokens']} wordpieces "
        f"(<= {s['encoder_batch_size']} texts), sorted by length; median of {result['repeats']} alternating repeats:",
        "",
        "| texts | count | mean wordpieces | texts/s before | texts/s after | speed-up (min–max) | cosine min | cosine mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        spread = f" ({r['speedup_min']:.2f}–{r['speedup_max']:.2f})" if "speedup_min" in r else ""
        words = f"{r['mean_wordpieces']:.0f}" if "mean_wordpieces" in r else "–"
        lines.append(f"| {r['texts']} | {r['count']} | {words} | {r['texts_per_s_before']:.1f} "
                     f"| {r['texts_per_s_after']:.1f} | {r['speedup_median']:.2f}x{spread} "
                     f"| {r['cosine_min']:.5f} | {r['cosine_mean']:.6f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-office")
    parser.add_argument("--config_files", nargs="*", default=None,
                        help="default: dataset/<name>/<name>.yaml when it exists")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="default: cuda when visible, else cpu")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (default benchmarks/results/encoding-<dataset>[-gpu].json); .md beside it")
    args, rest = parser.parse_known_args(argv)
    overrides = dict(a[2:].split("=", 1) for a in rest if a.startswith("--") and "=" in a)  # e.g. --encoder_precision=fp32
    files = args.config_files
    if files is None:
        own = Path("dataset") / args.dataset / f"{args.dataset}.yaml"
        files = [str(own)] if own.is_file() else []
    texts, config = dataset_texts(args.dataset, files, overrides)
    device = resolve_device(args.device or config["encoder_device"])
    settings = {"text_encoder": config["text_encoder"], "precision": resolve_precision(config["encoder_precision"], device),
                "max_length": config["encoder_max_length"] or _load(config["text_encoder"], device).own_max_seq_length,
                "encoder_batch_tokens": config["encoder_batch_tokens"], "encoder_batch_size": config["encoder_batch_size"]}
    rows = measure(texts, config, device, args.repeats)
    result = {"dataset": args.dataset, "device": device, "repeats": args.repeats, "settings": settings,
              "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(argv),
              "machine": machine(), "rows": rows}
    gpu = "-gpu" if device.startswith("cuda") else ""
    output = args.output or Path(__file__).parent / "results" / f"encoding-{args.dataset}{gpu}.json"
    write_result_files(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
