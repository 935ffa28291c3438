"""Write LLM preference profiles and item-knowledge texts for a RecBole dataset.

    export OPENAI_API_KEY=...        # read by the client; never printed or stored
    python -m ur4rec_recbole.generate --dataset ml-100k --backend openai --llm-model gpt-4o-mini
    python -m ur4rec_recbole.generate --dataset ml-100k --backend openai --llm-model qwen2.5:7b \\
        --base-url http://localhost:11434/v1 --concurrency 4          # Ollama, vLLM, llama.cpp, ...
    python -m ur4rec_recbole.generate --dataset ml-100k --backend transformers --llm-model smollm2

The files ``<name>.{user_pref,item_know}.<source>.jsonl`` land next to the
atomic files (``<source>`` is the backend name unless ``--source`` says
otherwise); train on them with ``--text_source=<source>``. Dataset options
are those of ``run_ur4rec.py`` (``--data_path=DIR``, ``--item_text_fields=[...]``).
Answers are cached in ``<name>.llm_cache.sqlite``: a rerun, or a run after an
interruption, only asks for what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from logging import getLogger
from pathlib import Path
from typing import Mapping

from ur4rec_recbole.cli import quiet_library_warnings, split_overrides
from ur4rec_recbole.texts.llm import GenerationOptions, GenerationSummary

EXIT_FATAL, EXIT_STOPPED, EXIT_INTERRUPTED = 2, 3, 130


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The LLM flags, shared by this module and ``run_ur4rec.py --generate``."""
    group = parser.add_argument_group("LLM text generation")
    group.add_argument("--llm-model", help="model name at the server (openai) or local path / alias 'smollm2' "
                                           "(transformers)")
    group.add_argument("--base-url", default=None,
                       help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1; default: OpenAI")
    group.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    group.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request (default 60)")
    group.add_argument("--max-retries", type=int, default=5, help="retries after 429/5xx/timeouts (default 5)")
    group.add_argument("--max-requests", type=int, default=None, help="budget: stop after this many requests")
    group.add_argument("--max-tokens-total", type=int, default=None,
                       help="budget: stop after this many prompt+completion tokens")
    group.add_argument("--temperature", type=float, default=0.2)
    group.add_argument("--llm-device", default=None, help="transformers backend: cuda or cpu (default: auto)")
    group.add_argument("--source", default=None, help="text_source name of the files (default: the backend)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace, backend: str) -> GenerationOptions:
    if not args.llm_model:
        raise SystemExit("--llm-model is required (a model name for openai; a path or 'smollm2' for transformers)")
    if args.concurrency < 1:
        raise SystemExit("--concurrency must be at least 1")
    return GenerationOptions(
        backend=backend, llm_model=args.llm_model, base_url=args.base_url, concurrency=args.concurrency,
        request_timeout=args.request_timeout, max_retries=args.max_retries, max_requests=args.max_requests,
        max_tokens_total=args.max_tokens_total, temperature=args.temperature, llm_device=args.llm_device,
        source=args.source, show_progress=not args.no_progress,
    )


def generate_texts(dataset_name: str, options: GenerationOptions,
                   cmd_overrides: Mapping[str, str] | None = None) -> GenerationSummary:
    """Generate (or take from the cache) every text of ``dataset_name``; write the files when complete.

    Raises :class:`ur4rec_recbole.texts.completers.Fatal` when no request can
    succeed. When a budget stops the run, nothing is written (the answers
    so far are cached) and ``summary.stopped`` says why.
    """
    from recbole.utils import init_logger, init_seed

    from ur4rec_recbole.config import Config
    from ur4rec_recbole.texts.answer_cache import AnswerCache
    from ur4rec_recbole.texts.base import histories_by_token, item_fields
    from ur4rec_recbole.texts.build import template_backend
    from ur4rec_recbole.texts.completers import COMPLETERS
    from ur4rec_recbole.texts.llm import PromptRunner
    from ur4rec_recbole.texts.prompts import PromptBuilder
    from ur4rec_recbole.texts.records import ITEM_KIND, USER_KIND, TextRecord, text_path, write_records
    from ur4rec_recbole.utils import create_dataset

    if options.backend not in COMPLETERS:
        raise ValueError(f"unknown backend {options.backend!r}; choose from {sorted(COMPLETERS)}")
    if options.text_source == "template":
        raise ValueError("--source template is reserved for the template backend's files")
    config = Config("UR4Rec", dataset_name, cmd_overrides=dict(cmd_overrides or {}))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    getLogger("httpx").setLevel("WARNING")  # one INFO line per request would drown the log
    fallback = template_backend(config)  # validates item_text_fields / user_profile_fields too
    dataset = create_dataset(config)
    _, portions = dataset.split_with_portions()  # training portions only: the leakage rule
    fields = sorted(set(config["item_text_fields"]) | set(config["user_profile_fields"]))
    items = item_fields(dataset, fields)
    histories = histories_by_token(dataset, portions)
    builder = PromptBuilder(config["item_text_fields"], config["user_profile_fields"],
                            config["text_field_labels"], config["history_window"])
    prompts = builder.item_prompts(items) + builder.user_prompts(histories, items)

    completer = COMPLETERS[options.backend](options)
    data_path = Path(config["data_path"])
    with AnswerCache(data_path / f"{config['dataset']}.llm_cache.sqlite") as cache:
        runner = PromptRunner(completer, cache, options)
        summary = asyncio.run(runner.run(prompts))
    if summary.stopped:
        return summary

    failed = {kind: [t for k, t in runner.failures if k == kind] for kind in (ITEM_KIND, USER_KIND)}
    templates = {  # template texts only for what the LLM failed on
        ITEM_KIND: {r.token: r for r in fallback.item_texts({t: items[t] for t in failed[ITEM_KIND]})},
        USER_KIND: {r.token: r for r in fallback.user_texts({t: histories[t] for t in failed[USER_KIND]}, items)},
    }
    written: dict[str, list[TextRecord]] = {ITEM_KIND: [], USER_KIND: []}
    for prompt in prompts:
        key = (prompt.kind, prompt.token)
        provenance = {"model": completer.model, "prompt_sha256": prompt.text_hash}
        if key in runner.answers:
            written[prompt.kind].append(TextRecord(prompt.token, runner.answers[key], completer.name,
                                                   prompt.version, provenance))
        elif prompt.token in templates[prompt.kind]:
            base = templates[prompt.kind][prompt.token]
            reason, attempts = runner.failures[key]
            written[prompt.kind].append(TextRecord(prompt.token, base.text, base.backend, base.version, {
                **provenance, "fallback_for": completer.name, "failure": reason, "attempts": attempts}))
            summary.fallbacks += 1
    for kind, records in written.items():
        path = text_path(data_path, config["dataset"], kind, options.text_source)
        write_records(path, records)
        logger.info(f"wrote {len(records)} texts to {path}")
    return summary


def run_generation(dataset_name: str, options: GenerationOptions,
                   cmd_overrides: Mapping[str, str] | None = None) -> GenerationSummary:
    """:func:`generate_texts` for a command line: one clear message and an exit code on failure."""
    from ur4rec_recbole.texts.completers import Fatal

    try:
        summary = generate_texts(dataset_name, options, cmd_overrides)
    except (Fatal, ValueError, FileNotFoundError) as err:  # bad input or server: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_FATAL) from None
    except KeyboardInterrupt:
        print("interrupted: every answer received so far is cached; rerun to continue", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    print(summary.report())
    if summary.stopped:
        raise SystemExit(EXIT_STOPPED)
    return summary


def main(argv: list[str] | None = None) -> GenerationSummary:
    parser = argparse.ArgumentParser(prog="python -m ur4rec_recbole.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (a folder of atomic files)")
    parser.add_argument("--backend", required=True, help="openai or transformers")
    add_generation_arguments(parser)
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    quiet_library_warnings()
    return run_generation(args.dataset, options_from_args(args, args.backend), split_overrides(extra))


if __name__ == "__main__":
    main()
