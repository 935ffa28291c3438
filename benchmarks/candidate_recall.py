"""Recall@M of the candidate stage: how often the test target is a candidate, overall and through each source.

    python benchmarks/candidate_recall.py --checkpoint RESULTS.json --output benchmarks/results/recall-ml-100k.json

Loads a trained UR4Rec (its checkpoint, or the ``--results`` JSON of the run
that saved it), builds each test user's candidate list exactly as
``two_stage`` scoring does (``UR4Rec.candidate_lists``, after the test
user's whole input sequence), and counts the users whose test target is in
it: ``overall``, and per source (``backbone``, ``text``, ``transitions``,
``fill``: the source that put the target in the list; they add up to
``overall``). A checkpoint trained without ``two_stage`` gets the candidate
stage of its configuration's ``candidate_*`` settings (its backbone is then
the one-stage model's sequence score). ``--count`` and the shares override
those settings, to see recall against M.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ur4rec_recbole  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch
from recbole.data import data_preparation
from tqdm import tqdm

from ur4rec_recbole.io import plain_config, write_result_files
from ur4rec_recbole.model.candidates import SOURCES, CandidateSettings, CandidateStage, source_recall
from ur4rec_recbole.run.prepare import prepare_run
from ur4rec_recbole.serve.loading import load_model, settings_from

SHARES = ("candidate_count", "candidate_backbone_share", "candidate_text_share", "candidate_transition_share")


@torch.no_grad()
def recall(model, config, test_data, overrides: dict) -> dict:
    settings = {key: overrides.get(key) if overrides.get(key) is not None else config[key]
                for key in (*SHARES, "candidate_text_window")}
    features = test_data._dataset.features
    model.candidate_stage = CandidateStage(CandidateSettings.from_config(settings), features.item_text,
                                           features.item_text_mask, test_data._dataset.training_histories,
                                           model.n_items)
    table = model.item_table()
    totals, users = dict.fromkeys(["overall", *SOURCES], 0.0), 0
    for batch in tqdm(test_data, desc="test users", leave=False):
        rows = batch[0]
        item_seq, lengths, targets = rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN], rows[model.ITEM_ID]
        state = model.gather_indexes(model.sequence_states(item_seq, table), lengths - 1)
        ranking = state @ table.T
        if model.exclude_history:
            ranking = ranking.scatter(1, item_seq, float("-inf"))
        found = source_recall(model.candidate_lists(ranking, item_seq, lengths - 1), targets)
        for key, value in found.items():
            totals[key] += value * len(targets)
        users += len(targets)
    return {"settings": settings, "test_users": users, "recall": {k: v / users for k, v in totals.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint, or the --results JSON of its run")
    parser.add_argument("--output", type=Path, required=True, help="JSON path; a .md table is written beside it")
    parser.add_argument("--counts", type=int, nargs="+", default=[None], help="candidate_count values (default: "
                                                                               "the checkpoint's)")
    for key in SHARES[1:]:
        parser.add_argument(f"--{key}", type=float, default=None)
    args = parser.parse_args(argv)
    loaded = load_model(args.checkpoint)  # (its dataset is built already: the test split is prepared afresh)
    prepared = prepare_run(loaded.config["model"], loaded.config["dataset"],
                           config_dict={**settings_from(plain_config(loaded.config)), "state": "WARNING"})
    _, _, test_data = data_preparation(prepared.config, prepared.dataset)
    rows = [recall(loaded.model, loaded.config, test_data, {**{k: getattr(args, k) for k in SHARES[1:]},
                                                            "candidate_count": count}) for count in args.counts]
    result = {"checkpoint": str(loaded.checkpoint), "dataset": loaded.config["dataset"],
              "two_stage": loaded.config["two_stage"], "command": " ".join(["python", *sys.argv]), "rows": rows}
    lines = [f"Candidate recall of the test target, {result['dataset']} ({result['rows'][0]['test_users']} users):", "",
             "| M | backbone / text / transitions share | overall | backbone | text | transitions | fill |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        s, found = r["settings"], r["recall"]
        lines.append(f"| {s['candidate_count']} | {s['candidate_backbone_share']} / {s['candidate_text_share']} / "
                     f"{s['candidate_transition_share']} | " + " | ".join(f"{found[k]:.4f}" for k in
                                                                        ["overall", *SOURCES]) + " |")
    write_result_files(args.output, result, "\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
