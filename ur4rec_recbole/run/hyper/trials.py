"""Trial records, the choice of the best trial (validation only), and the output files.

``trials.json`` and ``trials.md`` list every trial sorted by validation score;
``best.yaml`` holds the chosen trial's searched values plus the settings fixed on
the command line, for ``run_ur4rec.py --config_files best.yaml``. Test metrics
are never computed for the trials: only the chosen trial's checkpoint is tested,
once, after the search (the test set is read once, at the end).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from ur4rec_recbole.run.compare.report import pretty
from ur4rec_recbole.io import plain_value, write_json, write_text

REPORTED_TEST = "ndcg@10"


def clean_params(params: Mapping[str, Any]) -> dict:
    """Searched values as plain Python (numpy scalars out; integral floats of quniform as ints)."""
    cleaned = {}
    for key, value in params.items():
        value = plain_value(value)
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            value = int(value)
        cleaned[key] = value
    return cleaned


def trial_record(trial: int, params: Mapping, results: Mapping | None = None, status: str = "ok",
                 error: str | None = None) -> dict:
    """One row of trials.json."""
    record = {"trial": trial, "params": clean_params(params), "status": status}
    if results is not None:
        record.update({
            "best_valid_score": plain_value(results["best_valid_score"]),
            "best_valid_result": results["best_valid_result"],
            "checkpoint": results.get("checkpoint"),
            "best_epoch": results.get("best_epoch"),
            "epochs_run": results.get("epochs_run"),
            "train_seconds": results.get("train_seconds"),
        })
    if error is not None:
        record["error"] = error
    return record


def _score(record: Mapping, bigger: bool) -> float:
    score = record.get("best_valid_score")
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return -math.inf if bigger else math.inf
    return float(score)


def sort_trials(trials: Sequence[dict], bigger: bool) -> list[dict]:
    """Best validation score first; failed trials last; ties keep trial order."""
    return sorted(trials, key=lambda t: (-_score(t, bigger) if bigger else _score(t, bigger), t["trial"]))


def choose_best(trials: Sequence[dict], bigger: bool) -> dict:
    """The finished trial with the best validation score (ties: the earliest). Test is never read."""
    eligible = [t for t in trials if t["status"] == "ok" and t.get("best_valid_score") is not None]
    if not eligible:
        raise RuntimeError("no trial finished: see the errors in trials.json")
    return sort_trials(eligible, bigger)[0]


def _fixed_settings(cmd_overrides: Mapping[str, str], config: Mapping[str, Any]) -> dict:
    """The command line's --key=value settings as typed values (paths as given)."""
    fixed = {}
    for key, text in cmd_overrides.items():
        # our Config joins data_path with the dataset name; write back what the user gave
        fixed[key] = text if key == "data_path" else config.get(key, text)
    return fixed


def write_outputs(output: Path, *, tool: str, model: str, dataset: str, valid_metric: str, bigger: bool,
                  trials: Sequence[dict], cmd_overrides: Mapping[str, str], fixed_config: Mapping[str, Any],
                  config_files: Sequence[str] | None, test_chosen: Callable[[dict], dict] | None) -> dict:
    """Choose the best trial on validation, test it once, write trials.json, trials.md and best.yaml.

    ``fixed_config`` is the typed configuration built from ``cmd_overrides`` (for best.yaml);
    ``test_chosen(trial)`` returns the chosen trial's test result (from its checkpoint); ``None``
    (``--no-test``) leaves the test set unread, for a comparison that reads it once at the end.
    """
    output.mkdir(parents=True, exist_ok=True)
    ordered = sort_trials(trials, bigger)
    finished = any(t["status"] == "ok" for t in trials)
    best = choose_best(trials, bigger) if finished else None
    if best is not None:
        best["test_result"] = test_chosen(best) if test_chosen is not None else None
    summary = {
        "tool": tool, "model": model, "dataset": dataset, "valid_metric": valid_metric,
        "valid_metric_bigger": bigger, "chosen_trial": best and best["trial"],
        "chosen_by": f"best validation {valid_metric} among finished trials; " + (
            "only the chosen trial is tested, once, after the search" if test_chosen is not None
            else "no trial is tested (--no-test)"),
        "trials": ordered,
    }
    write_json(output / "trials.json", summary)
    write_text(output / "trials.md", _markdown(summary))
    if best is None:
        raise RuntimeError(f"no trial finished: see the errors in {output / 'trials.json'}")
    files = " ".join([*(config_files or []), str(output / "best.yaml")])
    tested = ("not tested (--no-test)" if best["test_result"] is None else
              f"its test {REPORTED_TEST} = {best['test_result'].get(REPORTED_TEST, float('nan')):.4f} "
              "(tested once, after choosing)")
    header = (f"# Best of {len(trials)} {tool} trials (trial {best['trial']}), chosen on validation {valid_metric} "
              f"= {best['best_valid_score']:.4f}; {tested}.\n"
              f"# python run_ur4rec.py --dataset {dataset} --model {model} --config_files {files}\n")
    values = {**_fixed_settings(cmd_overrides, fixed_config), **best["params"]}
    write_text(output / "best.yaml", header + yaml.safe_dump(values, sort_keys=False, default_flow_style=False))
    return summary


def _markdown(summary: Mapping) -> str:
    valid = pretty(summary["valid_metric"])
    names = sorted({k for t in summary["trials"] for k in t["params"]})
    header = ["rank", "trial", *names, f"valid {valid}", f"test {pretty(REPORTED_TEST)} (chosen trial only)", "best epoch",
              "epochs", "train s", "status"]
    lines = [
        f"# {summary['tool']} search: {summary['model']} on {summary['dataset']}",
        "",
        f"Sorted by validation {valid}; trial {summary['chosen_trial']} (**bold**) is chosen, on validation only."
        if summary["chosen_trial"] is not None else "No trial finished.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for rank, t in enumerate(summary["trials"], start=1):
        mark = "**" if t["trial"] == summary["chosen_trial"] else ""
        test = t.get("test_result") or {}
        cells = [str(rank), f"{mark}{t['trial']}{mark}", *(str(t["params"].get(n, "")) for n in names),
                 _num(t.get("best_valid_score")), _num(test.get(REPORTED_TEST)), str(t.get("best_epoch", "")),
                 str(t.get("epochs_run", "")), _num(t.get("train_seconds"), 1),
                 t["status"] + (f": {t['error']}" if t.get("error") else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"

