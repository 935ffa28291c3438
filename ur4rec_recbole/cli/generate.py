"""Write LLM preference profiles and item-knowledge texts for a RecBole dataset.

    export OPENAI_API_KEY=...        # read by the client; never printed or stored
    python -m ur4rec_recbole generate --dataset ml-100k --backend openai --llm-model gpt-4o-mini
    python -m ur4rec_recbole generate --dataset ml-100k --backend openai --llm-model qwen2.5:7b \\
        --base-url http://localhost:11434/v1 --concurrency 4          # Ollama, vLLM, llama.cpp, ...
    python -m ur4rec_recbole generate --dataset ml-100k --backend transformers --llm-model smollm2

The files ``<name>.{user_pref,item_know}.<source>.jsonl`` land next to the
atomic files (``<source>`` is the backend name unless ``--source`` says
otherwise); train on them with ``--text_source=<source>``. Dataset settings
are those of ``run_ur4rec.py`` (``--config_files``, ``--data_path=DIR``,
``--item_text_fields=[...]``). Answers are cached in ``<name>.llm_cache.sqlite``:
a rerun, or a run after an interruption, only asks for what is missing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Mapping, Sequence

from ur4rec_recbole.cli.common import add_dataset_arguments, command, quiet_library_warnings, split_overrides
from ur4rec_recbole.errors import EXIT_USAGE, InputError
from ur4rec_recbole.generate.llm import GenerationOptions, GenerationSummary

EXIT_FATAL, EXIT_STOPPED, EXIT_INTERRUPTED = EXIT_USAGE, 3, 130


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
        raise InputError("--llm-model is required (a model name for openai; a path or 'smollm2' for transformers)")
    if args.concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {args.concurrency}")
    return GenerationOptions(
        backend=backend, llm_model=args.llm_model, base_url=args.base_url, concurrency=args.concurrency,
        request_timeout=args.request_timeout, max_retries=args.max_retries, max_requests=args.max_requests,
        max_tokens_total=args.max_tokens_total, temperature=args.temperature, llm_device=args.llm_device,
        source=args.source, show_progress=not args.no_progress,
    )


def run_generation(dataset_name: str, options: GenerationOptions,
                   cmd_overrides: Mapping[str, str] | None = None,
                   config_file_list: Sequence[str] | None = None, debug: bool = False) -> GenerationSummary:
    """:func:`generate_texts` for a command line: one clear message and an exit code on failure."""
    from ur4rec_recbole.generate.runner import generate_texts
    from ur4rec_recbole.generate.completers import Fatal

    try:
        with command(debug, interrupted="interrupted: every answer received so far is cached; rerun to continue"):
            summary = generate_texts(dataset_name, options, cmd_overrides, config_file_list)
    except Fatal as err:  # no request can succeed (dead server, bad key): one line, no traceback
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_FATAL) from None
    print(summary.report())
    if summary.stopped:
        raise SystemExit(EXIT_STOPPED)
    return summary


def main(argv: list[str] | None = None) -> GenerationSummary:
    parser = argparse.ArgumentParser(prog="python -m ur4rec_recbole generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--backend", required=True, help="openai or transformers")
    add_generation_arguments(parser)
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    quiet_library_warnings()
    with command(args.debug):
        options, overrides = options_from_args(args, args.backend), split_overrides(extra)
    return run_generation(args.dataset, options, overrides, args.config_files, args.debug)


if __name__ == "__main__":
    main()
