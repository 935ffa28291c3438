"""LLM-written preference profiles and item-knowledge texts for a RecBole dataset.

The command line is :mod:`ur4rec_recbole.cli.generate`. Histories come from
``UR4RecDataset.split_with_portions`` (training portions only: the leakage
rule's one place); answers are cached in ``<name>.llm_cache.sqlite`` so a
rerun, or a run after an interruption, only asks for what is missing; the
text files are written only when every prompt has an answer or a template
fallback.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from logging import getLogger
from pathlib import Path
from typing import Mapping, Sequence

from ur4rec_recbole.run.prepare import prepare_run
from ur4rec_recbole.generate.answer_cache import AnswerCache
from ur4rec_recbole.texts.base import histories_by_token, item_fields
from ur4rec_recbole.texts.build import template_backend
from ur4rec_recbole.generate.completers import COMPLETERS
from ur4rec_recbole.generate.llm import GenerationOptions, GenerationSummary, PromptRunner
from ur4rec_recbole.texts.profiles import history_fingerprint, profile_histories
from ur4rec_recbole.generate.prompts import PromptBuilder
from ur4rec_recbole.texts.records import ITEM_KIND, USER_KIND, TextRecord, text_path, write_records


def generate_texts(dataset_name: str, options: GenerationOptions,
                   cmd_overrides: Mapping[str, str] | None = None,
                   config_file_list: Sequence[str] | None = None) -> GenerationSummary:
    """Generate (or take from the cache) every text of ``dataset_name``; write the files when complete.

    Raises :class:`ur4rec_recbole.generate.completers.Fatal` when no request can
    succeed. When a budget stops the run, nothing is written (the answers
    so far are cached) and ``summary.stopped`` says why.
    """
    if options.backend not in COMPLETERS:
        raise ValueError(f"unknown backend {options.backend!r}; choose from {sorted(COMPLETERS)}")
    if options.text_source == "template":
        raise ValueError("--source template is reserved for the template backend's files")
    prepared = prepare_run("UR4Rec", dataset_name, config_file_list, cmd_overrides=cmd_overrides)
    config, dataset, logger = prepared.config, prepared.dataset, getLogger()
    getLogger("httpx").setLevel("WARNING")  # one INFO line per request would drown the log
    fallback = template_backend(config)  # validates item_text_fields / user_profile_fields too
    _, portions = dataset.split_with_portions()  # training portions only: the leakage rule
    fields = sorted(set(config["item_text_fields"]) | set(config["user_profile_fields"]))
    items = item_fields(dataset, fields)
    histories = histories_by_token(dataset, portions)
    builder = PromptBuilder(config["item_text_fields"], config["user_profile_fields"],
                            config["text_field_labels"], config["history_window"])
    prefixes = {}  # (user token, cutoff) -> the prefix its profile is written from
    prompts = builder.item_prompts(items)
    for rank in profile_histories(histories, config["profile_cutoffs"]):  # one prompt per user and cut-off
        for prompt in builder.user_prompts(rank, items):
            prompts.append(replace(prompt, cutoff=len(rank[prompt.token])))
            prefixes[(prompt.token, prompts[-1].cutoff)] = rank[prompt.token]

    completer = COMPLETERS[options.backend](options)
    data_path = Path(config["data_path"])
    with AnswerCache(data_path / f"{config['dataset']}.llm_cache.sqlite") as cache:
        runner = PromptRunner(completer, cache, options)
        summary = asyncio.run(runner.run(prompts))
    if summary.stopped:
        return summary

    written: dict[str, list[TextRecord]] = {ITEM_KIND: [], USER_KIND: []}
    for prompt in prompts:
        key = prompt.ident
        provenance = {"model": completer.model, "prompt_sha256": prompt.text_hash}
        history = prefixes.get((prompt.token, prompt.cutoff))
        profile = {} if history is None else {"cutoff": prompt.cutoff, "fingerprint": history_fingerprint(history)}
        if key in runner.answers:
            written[prompt.kind].append(TextRecord(prompt.token, runner.answers[key], completer.name,
                                                   prompt.version, provenance, **profile))
            continue
        # the LLM failed on this prompt: the template text of the same item or prefix stands in
        base = (fallback.item_texts({prompt.token: items[prompt.token]}) if history is None
                else fallback.user_texts({prompt.token: history}, items))
        if base:
            reason, attempts = runner.failures[key]
            written[prompt.kind].append(TextRecord(prompt.token, base[0].text, base[0].backend, base[0].version, {
                **provenance, "fallback_for": completer.name, "failure": reason, "attempts": attempts}, **profile))
            summary.fallbacks += 1
    for kind, records in written.items():
        path = text_path(data_path, config["dataset"], kind, options.text_source)
        write_records(path, records)
        logger.info(f"wrote {len(records)} texts to {path}")
    return summary
