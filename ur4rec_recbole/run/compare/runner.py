"""Train every model of a ``--compare`` list for every seed, one results file per run.

Each run goes through :func:`ur4rec_recbole.run.single.run` (same Config
chain, split, evaluator and trainer for UR4Rec and RecBole's models) with the
seed as RecBole's ``seed`` setting; the split (leave-one-out by time) does not
depend on the seed. Every run writes ``OUTPUT/runs/<label>-seed<k>.json``
atomically: a finished run is skipped when the command is repeated with the
same ``--output`` and its resolved settings are still those of its record
(a changed default makes it run again); a failed run writes a failure record (error and traceback),
the other runs go on, and a repeated command tries the failed run again.
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from pathlib import Path
from typing import Collection, Mapping, Sequence

import yaml
from tqdm import tqdm

from ur4rec_recbole.config import Config
from ur4rec_recbole.config.data_rules import derived_again
from ur4rec_recbole.config.settings import read_settings_file
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.run.compare.report import write_report
from ur4rec_recbole.run.compare.spec import RunSpec
from ur4rec_recbole.io import dated_output, plain_config, write_json
from ur4rec_recbole.outputs import check_outside_dataset
from ur4rec_recbole.run.single import run

FIRST_SEED = 2020  # --seeds N runs seeds 2020 .. 2020 + N - 1
REPORTED_TOPK = "[10, 20]"  # Recall/NDCG/MRR/Hit at 10 and 20 unless topk is set explicitly


def seeds_for(n: int) -> list[int]:
    """The ``n`` seeds of ``--seeds n``."""
    if n < 1:
        raise ValueError(f"--seeds must be at least 1, got {n}")
    return [FIRST_SEED + i for i in range(n)]


DISPLAY_ONLY = frozenset({"state", "show_progress", "checkpoint_dir"})  # settings that change no result
# resolved settings that say where or on what a run ran, not what it computed (paths differ between clones)
MACHINE_ONLY = frozenset({"data_path", "data_root", "gpu_id", "worker", "device", "use_gpu", "torch_threads",
                          "local_rank", "nproc", "world_size", "offset", "ip", "port"})
# field names RecBole's BERT4Rec (its masked-item transform) writes into the config while it runs: a
# finished run's record holds them, a fresh Config does not, and they change nothing between runs
MODEL_WRITTEN = frozenset({"MASK_INDEX", "MASK_ITEM_SEQ", "NEG_ITEMS", "POS_ITEMS"})
NOT_COMPARED = DISPLAY_ONLY | MACHINE_ONLY | MODEL_WRITTEN  # left out when a finished run's settings are compared


def run_settings(cmd_overrides: Mapping[str, str], config_file_list: Sequence[str] | None) -> dict:
    """What a finished run must share with this invocation to be reused: the command line's settings (those
    that can change a result) and the config files."""
    return {"cmd_overrides": {k: str(v) for k, v in sorted(cmd_overrides.items()) if k not in DISPLAY_ONLY},
            "config_files": [str(f) for f in config_file_list or []]}


def run_stem(label: str, seed: int) -> str:
    """A file-name-safe, collision-free stem for one (label, seed)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")[:60]
    digest = hashlib.sha1(label.encode()).hexdigest()[:6]
    return f"{slug}-{digest}-seed{seed}"


def _file_settings(config_file_list: Sequence[str] | None) -> set[str]:
    """The settings the user's yaml files set."""
    return {key for f in config_file_list or [] for key in read_settings_file(f, yaml.SafeLoader)}


def check_specs(specs: Sequence[RunSpec], dataset: str, config_file_list: Sequence[str] | None,
                cmd_overrides: Mapping[str, str], output: Path | None = None) -> set[str]:
    """Before any run: each entry's settings are valid for its model, each common one known to a listed model.

    Returns the common settings (command line and files), which every run
    accepts even when its own model does not know them.
    """
    common = set(cmd_overrides) | _file_settings(config_file_list)
    known: set[str] = set()
    configs = []
    for spec in specs:
        try:
            config = Config(spec.model, dataset, config_file_list,
                            cmd_overrides={**cmd_overrides, **spec.overrides}, also_known=common | set(spec.overrides))
        except ValueError as err:  # a bad value (InputError) or one RecBole's Config refuses
            raise InputError(f"--compare entry {spec.label!r}: {err}") from err
        config.reject_unknown(spec.overrides, where=f"--compare entry {spec.label!r}")
        known |= config.known_settings()
        configs.append(config)
    configs[0].reject_unknown(common, known=known, models=", ".join(dict.fromkeys(s.model for s in specs)))
    if output is not None:  # the runs' records and checkpoints go there
        check_outside_dataset(output, configs[0]["data_path"], "--output")
    return common


def run_overrides(spec: RunSpec, seed: int, output: Path, config_file_list: Sequence[str] | None,
                  cmd_overrides: Mapping[str, str]) -> dict[str, str]:
    """The settings one (model, seed) runs with on top of the config chain."""
    overrides = {**cmd_overrides, **spec.overrides, "seed": str(seed),
                 "checkpoint_dir": str(output / "checkpoints" / run_stem(spec.label, seed))}
    if "topk" not in overrides and "topk" not in _file_settings(config_file_list):
        overrides["topk"] = REPORTED_TOPK
    return overrides


def changed_settings(previous: Mapping, spec: RunSpec, seed: int, dataset: str, output: Path,
                     config_file_list: Sequence[str] | None, cmd_overrides: Mapping[str, str],
                     common: Collection[str] = ()) -> list[str]:
    """Resolved settings in which a finished run's record differs from what this invocation would run.

    The command line alone is not enough: a changed package or dataset
    default (or a setting added since, absent from the record) changes a run
    that the same command line would repeat. Display and machine settings
    (``DISPLAY_ONLY``, ``MACHINE_ONLY``) are left out. Sorted names.
    """
    config = Config(spec.model, dataset, config_file_list,
                    cmd_overrides=run_overrides(spec, seed, output, config_file_list, cmd_overrides),
                    also_known=set(common) | set(spec.overrides))
    now = json.loads(json.dumps(plain_config(config)))  # as a record stores it
    then = previous.get("config") or {}
    missing = object()
    # settings the data decided (auto masks, data rules) are decided again from the same data
    again = {key for key in previous.get("settings_from_data") or () if key in now and derived_again(config, key)}
    compared = (set(now) | set(then)) - NOT_COMPARED - again
    return sorted(key for key in compared if now.get(key, missing) != then.get(key, missing))


def run_one(spec: RunSpec, seed: int, dataset: str, output: Path,
            config_file_list: Sequence[str] | None, cmd_overrides: Mapping[str, str],
            common: Collection[str] = ()) -> dict:
    """Train and test one (model, seed); return its record (``status`` ok or failed)."""
    record = {"label": spec.label, "model": spec.model, "overrides": dict(spec.overrides), "seed": seed,
              "settings": run_settings(cmd_overrides, config_file_list)}
    overrides = run_overrides(spec, seed, output, config_file_list, cmd_overrides)
    try:
        results = run(model=spec.model, dataset=dataset, config_file_list=config_file_list,
                      cmd_overrides=overrides, per_user=True, also_known=common)
    except Exception as err:  # one model's failure must not stop the others
        return {**record, "status": "failed", "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()}
    return {**record, "status": "ok", **results}


def compare(specs: Sequence[RunSpec], dataset: str, seeds: Sequence[int], output: str | Path | None = None,
            config_file_list: Sequence[str] | None = None,
            cmd_overrides: Mapping[str, str] | None = None, *, run_missing: bool = True) -> dict:
    """Run (or reuse) every (spec, seed), then write benchmark.md/json/png; return benchmark.json's content.

    ``run_missing=False`` writes the report from the runs already finished in ``output`` and trains
    nothing: a (spec, seed) without a reusable run is counted as not run (the table's "runs ok"
    column and the list under it say which), so a partial table says it is partial.
    """
    output = Path(output) if output is not None else dated_output("compare")
    cmd_overrides = dict(cmd_overrides or {})
    for where, keys in [("the command line", cmd_overrides)] + [(s.label, s.overrides) for s in specs]:
        if "seed" in keys:
            raise ValueError(f"seed is set in {where}; with --compare the seeds come from --seeds")
    common = check_specs(specs, dataset, config_file_list, cmd_overrides, output)
    runs_dir = output / "runs"
    records = []
    jobs = [(spec, seed) for spec in specs for seed in seeds]
    for spec, seed in tqdm(jobs, desc="compare", unit="run"):
        path = runs_dir / f"{run_stem(spec.label, seed)}.json"
        if path.is_file():
            previous = json.loads(path.read_text())
            # reused only when run under the same settings, as given and as resolved; otherwise run again
            # (and replace it)
            if previous.get("status") == "ok" and previous.get("settings") == run_settings(cmd_overrides,
                                                                                            config_file_list):
                changed = changed_settings(previous, spec, seed, dataset, output, config_file_list, cmd_overrides,
                                           common)
                if not changed:
                    records.append(previous)
                    continue
                tqdm.write(f"{path}: made under other settings ({', '.join(changed[:5])}"
                           f"{', ...' if len(changed) > 5 else ''}: changed defaults or settings added since); "
                           "running it again")
        if not run_missing:
            if path.is_file() and previous.get("status") == "failed":  # a failure is reported as one
                records.append(previous)
                continue
            records.append({"label": spec.label, "model": spec.model, "overrides": dict(spec.overrides),
                            "seed": seed, "status": "not run", "error": "not run (report only)"})
            continue
        record = run_one(spec, seed, dataset, output, config_file_list, cmd_overrides, common)
        write_json(path, record)
        records.append(record)
    return write_report(output, specs, seeds, dataset, records)
