"""How fast and how costly is LLM text generation for a dataset? (README, "LLM-written texts")

    python benchmarks/llm_throughput.py --dataset ml-100k --delay 0.25 \
        --out benchmarks/results/llm-ml-100k.json

1. texts/second against the loopback OpenAI-compatible server
   (``tests/helpers/loopback.py``, its own process, ``--delay`` seconds per answer)
   at concurrency 1 and 16, each stopped by a request budget;
2. a full run over the dataset at concurrency 16: calls and prompt tokens, counted
   by the server with the SmolLM2 tokenizer (a real BPE tokenizer; the loopback's
   *answers* are not an LLM's, so completion tokens are given as the cap the
   prompts ask for, ``max_tokens`` per call);
3. the ``transformers`` backend with SmolLM2-135M-Instruct on this machine, for a
   few texts: real answers, real completion lengths.

Everything runs in a temporary copy of the dataset folder, so the user's answer
cache and text files are untouched. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ur4rec_recbole.io import machine, write_json  # noqa: E402
from ur4rec_recbole.generate.runner import generate_texts  # noqa: E402
from ur4rec_recbole.generate.llm import GenerationOptions  # noqa: E402
from ur4rec_recbole.generate.prompts import PromptTemplate  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, delay: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "helpers" / "loopback.py"), "--port", str(port),
                             "--delay", str(delay), "--tokenizer", "smollm2"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # "serving on ..." once the tokenizer is loaded
    if "serving on" not in line:
        proc.kill()
        raise SystemExit(f"loopback server did not start: {line!r}")
    return proc


def row(label: str, summary, concurrency: int) -> dict:
    return {
        "run": label, "concurrency": concurrency, "prompts": summary.prompts, "generated": summary.generated,
        "failed": summary.failed, "calls": summary.calls, "retries": summary.retries,
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens, "seconds": round(summary.seconds, 2),
        "texts_per_second": round(summary.texts_per_second, 2), "stopped": summary.stopped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--delay", type=float, default=0.25, help="loopback seconds per answer")
    parser.add_argument("--budget-c1", type=int, default=200, help="requests measured at concurrency 1")
    parser.add_argument("--budget-c16", type=int, default=800, help="requests measured at concurrency 16")
    parser.add_argument("--local-texts", type=int, default=12, help="texts generated with SmolLM2")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "loopback")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"data_path": tmp, "show_progress": "False", "state": "WARNING"}
        port = free_port()
        server = start_server(port, args.delay)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            for label, concurrency, budget in (("loopback, budget", 1, args.budget_c1),
                                               ("loopback, budget", 16, args.budget_c16),
                                               ("loopback, full dataset", 16, None)):
                options = GenerationOptions(backend="openai", llm_model=f"loopback-c{concurrency}-{budget}",
                                            base_url=url, concurrency=concurrency, max_requests=budget,
                                            show_progress=False)
                rows.append(row(label, generate_texts(args.dataset, options, overrides), concurrency))
                print(rows[-1], flush=True)
        finally:
            server.kill()
        local = GenerationOptions(backend="transformers", llm_model="smollm2", max_requests=args.local_texts,
                                  llm_device="cpu", show_progress=False)
        rows.append(row("transformers SmolLM2-135M, CPU", generate_texts(args.dataset, local, overrides), 1))
        print(rows[-1], flush=True)

    full = rows[2]
    caps = {kind: PromptTemplate.load(kind).max_tokens for kind in ("user_pref", "item_know")}
    report = {"dataset": args.dataset, "loopback_delay_s": args.delay, "runs": rows,
              "completion_token_cap_per_call": caps, "machine": machine()}
    write_json(args.out, report)
    print(f"\n| run | concurrency | texts | calls (retries) | prompt tokens | completion tokens | seconds | texts/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['concurrency']} | {r['generated']} | {r['calls']} ({r['retries']}) | {r['prompt_tokens']} | "
              f"{r['completion_tokens']} | {r['seconds']:.1f} | {r['texts_per_second']:.2f} |")
    local = rows[3]
    print(f"\nFull {args.dataset} run: {full['prompts']} prompts, {full['calls']} calls, "
          f"{full['prompt_tokens']} prompt tokens (SmolLM2 tokenizer), completion capped at "
          f"{caps['user_pref']} (user) / {caps['item_know']} (item) tokens per call; SmolLM2 wrote "
          f"{local['completion_tokens'] / max(local['calls'], 1):.0f} completion tokens per call on average.")


if __name__ == "__main__":
    main()
