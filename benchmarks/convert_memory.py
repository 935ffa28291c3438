"""Peak memory of the amazon converter as review files grow but ids do not.

    python benchmarks/convert_memory.py --reviews 1000000 --users 200000 --items 50000 --text 50,2000 \\
        --results benchmarks/results/convert-memory.json

For each review-text length, writes a synthetic Amazon 2023 review file
(``user_id``/``parent_asin``/``timestamp``/``rating``/``text``, the same users,
items and times every time; item popularity and user activity follow power
laws, so the 5-core filter has work to do) plus a metadata file, runs
``python -m ur4rec_recbole convert amazon`` on them in a child process and
records the file size, the child's peak resident memory (``wait4``'s
``ru_maxrss``), its seconds and the counts it reports. The converter holds
the ids, not the reviews, so the peak should not follow the file size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from time import time

ROOT = Path(__file__).resolve().parent.parent


def write_files(folder: Path, reviews: int, users: int, items: int, text: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    words = " ".join(rng.choice(["good", "bad", "fine", "works", "broke", "nice", "price", "fast"])
                     for _ in range(4000))
    user_ids = [f"AE{u:026d}" for u in range(users)]
    item_ids = [f"B0{i:08d}" for i in range(items)]
    review_file = folder / "reviews.jsonl"
    with open(review_file, "w") as handle:
        for k in range(reviews):
            user = user_ids[min(int(rng.paretovariate(1.2)) - 1, users - 1) if k % 2 else rng.randrange(users)]
            item = item_ids[min(int(rng.paretovariate(1.0)) - 1, items - 1) if k % 3 else rng.randrange(items)]
            start = (k * 37) % 2000
            handle.write(f'{{"rating": {1 + k % 5}.0, "title": "ok", "text": "{words[start:start + text]}", '
                         f'"asin": "{item}", "parent_asin": "{item}", "user_id": "{user}", '
                         f'"timestamp": {1_500_000_000_000 + k * 1000}, "helpful_vote": 0}}\n')
    meta_file = folder / "meta.jsonl"
    with open(meta_file, "w") as handle:
        for i, item in enumerate(item_ids):
            handle.write(json.dumps({"parent_asin": item, "title": f"Product {i}", "store": f"Store {i % 97}",
                                     "categories": ["Books", f"Genre {i % 31}"], "description": [words[:300]],
                                     "images": [{"large": f"https://example.com/{item}.jpg"}]}) + "\n")
    return review_file, meta_file


def measure(review_file: Path, meta_file: Path, out: Path) -> dict:
    command = [sys.executable, "-m", "ur4rec_recbole", "convert", "amazon", str(review_file), str(meta_file),
               "--name", "synthetic", "--out", str(out), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"the converter failed (status {status})")
    report = json.loads(stdout)
    return {"review_file_bytes": review_file.stat().st_size, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "seconds": round(time() - start, 1), "read": report["read"], "kept": report["kept"],
            "k_core_rounds": report["k_core_rounds"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--text", default="50,2000", help="review text lengths in characters, one run each")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for length in (int(t) for t in args.text.split(",")):
        with tempfile.TemporaryDirectory(dir=ROOT / "dataset" if (ROOT / "dataset").is_dir() else None) as tmp:
            review_file, meta_file = write_files(Path(tmp), args.reviews, args.users, args.items, length)
            row = {"text_chars": length, **measure(review_file, meta_file, Path(tmp) / "out")}
        rows.append(row)
        print(f"text {length:>5} chars: file {row['review_file_bytes'] / 2**20:8.1f} MiB, "
              f"peak RSS {row['peak_rss_mib']:7.1f} MiB, {row['seconds']:6.1f} s, read {row['read']}, "
              f"kept {row['kept']}", flush=True)
    result = {"command": "python benchmarks/convert_memory.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()}, "runs": rows}
    if args.results:
        args.results.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
