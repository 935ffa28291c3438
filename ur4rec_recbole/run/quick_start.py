"""RecBole's quick-start entry points for this package's models (and RecBole's), as RecBole-GNN mirrors them.

    from ur4rec_recbole import run_ur4rec, load_data_and_model
    result = run_ur4rec(model="UR4Rec", dataset="ml-100k", config_dict={"epochs": 5})
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(result["checkpoint"])

Same arguments and return shapes as ``recbole.quick_start.run_recbole`` and ``load_data_and_model``;
both go through this package's one setup path (``run/prepare.py``), so a model trained here scores
exactly as under ``run_ur4rec.py``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch

from ur4rec_recbole.serve.loading import load_model
from ur4rec_recbole.run.single import run


def run_ur4rec(model: str | None = None, dataset: str | None = None, config_file_list: Sequence[str] | None = None,
               config_dict: Mapping[str, Any] | None = None, saved: bool = True, queue=None) -> dict:
    """Train and test ``model`` on ``dataset`` (``recbole.quick_start.run_recbole``'s arguments).

    Returns RecBole's dict, ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result`` and
    ``test_result`` (``OrderedDict`` of metrics), plus ``checkpoint``: the file the best model was saved
    to (``None`` when ``saved=False``), which :func:`load_data_and_model` and ``Recommender.load`` read.
    ``config_dict`` holds any setting (``{"epochs": 5, "retriever_weight": 0}``), above every yaml file.
    With ``queue`` the result is also put on it, as RecBole does for spawned processes.
    """
    results = run(model=model or "UR4Rec", dataset=dataset or "ml-100k", config_file_list=config_file_list,
                  config_dict=config_dict, saved=saved)
    result = {
        "best_valid_score": results["best_valid_score"],
        "valid_score_bigger": results["config"]["valid_metric_bigger"],
        "best_valid_result": OrderedDict(results["best_valid_result"]),
        "test_result": OrderedDict(results["test_result"]),
        "checkpoint": results["checkpoint"],
    }
    if queue is not None and results["config"].get("local_rank", 0) == 0:
        queue.put(result)
    return result


def load_data_and_model(model_file: str | os.PathLike, data_path: str | os.PathLike | None = None):
    """``(config, model, dataset, train_data, valid_data, test_data)`` of a checkpoint, as RecBole returns them.

    ``model_file`` is a checkpoint saved by this package (or the ``--results`` JSON of its run);
    ``data_path`` the folder holding ``<dataset>/`` when it moved. The configuration is rebuilt
    from the checkpoint and the dataset folder must hold the data the model was trained on (one
    line otherwise, as for ``Recommender.load``). The model is in eval mode, on the GPU when
    there is one.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = load_model(model_file, data_path=data_path, device=device, loaders=True)
    train_data, valid_data, test_data = loaded.loaders
    return loaded.config, loaded.model, loaded.dataset, train_data, valid_data, test_data
