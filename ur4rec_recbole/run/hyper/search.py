"""Hyperparameter search with hyperopt, through RecBole's ``HyperTuning``.

RecBole's default objective builds models with RecBole's own look-ups, which
cannot find UR4Rec; ours trains through :func:`ur4rec_recbole.run.single.run`
and records every trial. HyperTuning minimises the validation score (negated
when bigger is better). Trials never compute test metrics (RecBole's objective
does); the chosen trial's checkpoint is tested once, after the search.
"""

from __future__ import annotations

import os
import traceback
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

from ur4rec_recbole.config import Config
from ur4rec_recbole.errors import require
from ur4rec_recbole.outputs import check_outside_dataset
from ur4rec_recbole.io import plain_config
from ur4rec_recbole.run.hyper.space import Param, grid_size, hyperopt_space
from ur4rec_recbole.run.hyper.trials import trial_record, write_outputs
from ur4rec_recbole.run.single import run, test_saved_model

ALGORITHMS = ("exhaustive", "random", "bayes")


def check_overlap(params: Sequence[Param], cmd_overrides: Mapping[str, str]) -> None:
    """A searched parameter must not also be fixed on the command line (which would win)."""
    both = sorted({p.name for p in params} & set(cmd_overrides))
    if both:
        raise ValueError(f"{both} are searched and also set with --key=value; drop one of the two")


def base_config(model: str, dataset: str, config_files: Sequence[str] | None,
                cmd_overrides: Mapping[str, str], params: Sequence[Param] = (),
                output: str | Path | None = None) -> Config:
    """The configuration every trial starts from: selection rule, epochs, typed fixed settings.

    A searched parameter that ``model`` does not know, or an ``output`` folder
    inside the dataset's folder, is refused here, before any trial.
    """
    config = Config(model, dataset, config_files, cmd_overrides=cmd_overrides)
    config.reject_unknown([p.name for p in params], where="the --hyper params file")
    check_outside_dataset(output, config["data_path"], "--output")
    return config


def hyperopt_algorithm(name: str):
    """RecBole's algorithm names; exhaustive is passed as a callable so that ``--max-evals`` is kept."""
    require("hyperopt", "hyper", "--hyper --tool hyperopt")
    from hyperopt import rand, tpe
    from recbole.trainer.hyper_tuning import exhaustive_search

    table = {"exhaustive": partial(exhaustive_search, nbMaxSucessiveFailures=1000),
             "random": rand.suggest, "bayes": tpe.suggest}
    if name not in table:
        raise ValueError(f"--algo {name!r} unknown for hyperopt; choose from {', '.join(ALGORITHMS)}")
    return table[name]


def search_hyperopt(params: Sequence[Param], model: str, dataset: str, output: str | Path, max_evals: int,
                    algo: str = "bayes", config_files: Sequence[str] | None = None,
                    cmd_overrides: Mapping[str, str] | None = None, early_stop: int = 10, test: bool = True) -> dict:
    """Run ``max_evals`` trials (fewer if ``early_stop`` trials bring no gain); write the outputs.

    ``test=False``: the chosen trial is not tested either (choose only).
    """
    from recbole.trainer import HyperTuning

    output = Path(output)
    cmd_overrides = dict(cmd_overrides or {})
    check_overlap(params, cmd_overrides)
    base = base_config(model, dataset, config_files, cmd_overrides, params, output)
    valid_metric, bigger = base["valid_metric"].lower(), bool(base["valid_metric_bigger"])
    if algo == "exhaustive":
        max_evals = min(max_evals, grid_size(params))
    trials: list[dict] = []

    def objective(config_dict: dict, fixed_config_file_list) -> dict:
        trial = len(trials)
        overrides = {**cmd_overrides, "checkpoint_dir": str(output / "checkpoints" / f"trial{trial}")}
        try:
            results = run(model, dataset, config_file_list=fixed_config_file_list, config_dict=config_dict,
                          cmd_overrides=overrides, test=False)
        except Exception as err:  # a bad combination scores worst; the search goes on
            trials.append(trial_record(trial, config_dict, status="failed", error=f"{type(err).__name__}: {err}"))
            traceback.print_exc()
            worst = float("-inf") if bigger else float("inf")
            return {"model": model, "best_valid_score": worst, "valid_score_bigger": bigger,
                    "best_valid_result": {}, "test_result": {}}
        trials.append(trial_record(trial, config_dict, results))
        return {"model": model, "best_valid_score": results["best_valid_score"], "valid_score_bigger": bigger,
                "best_valid_result": results["best_valid_result"], "test_result": {}}

    tuner = HyperTuning(objective, space=hyperopt_space(list(params)), fixed_config_file_list=config_files,
                        algo=hyperopt_algorithm(algo), max_evals=max_evals, early_stop=early_stop)
    previous_seed = os.environ.get("HYPEROPT_FMIN_SEED")
    os.environ["HYPEROPT_FMIN_SEED"] = previous_seed or "2020"  # reproducible proposals unless set
    try:
        tuner.run()
    finally:
        if previous_seed is None:
            os.environ.pop("HYPEROPT_FMIN_SEED")
    summary = write_outputs(output, tool=f"hyperopt ({algo})", model=model, dataset=dataset,
                            valid_metric=valid_metric, bigger=bigger, trials=trials, cmd_overrides=cmd_overrides,
                            fixed_config=plain_config(base), config_files=config_files,
                            test_chosen=(lambda best: test_saved_model(
                                model, dataset, best["checkpoint"], config_files, best["params"], cmd_overrides))
                                if test else None)
    return summary

