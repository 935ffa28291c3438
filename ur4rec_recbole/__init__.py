"""UR4Rec for RecBole: user-preference retrieval over LLM-written texts, fused with SASRec."""

import os

# OpenMP threads that spin while they wait take the cores from each other and from every other
# process: with one other busy process an epoch took 4x (and up to 20x under more load) its quiet
# time. PASSIVE makes waiting threads sleep; libgomp (torch's OpenMP on Linux) first spins
# GOMP_SPINCOUNT times, which buys back most of the quiet speed that sleeping at once costs while
# keeping a contended epoch within about 2x its quiet time (docs/results/speed.md). The OpenMP runtime
# reads these when torch loads, so they are set here, before any module of this package imports
# torch; when OMP_WAIT_POLICY is already set, neither is touched.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

__version__ = "0.1.0"

# The Python API, in RecBole's style (recbole.quick_start); imported on first use, so that
# ``import ur4rec_recbole`` stays light and sets the OpenMP defaults above before torch loads.
API = {
    "run_ur4rec": "ur4rec_recbole.run.quick_start",
    "load_data_and_model": "ur4rec_recbole.run.quick_start",
    "Recommender": "ur4rec_recbole.serve",
}
__all__ = ["__version__", *API]


def __getattr__(name: str):
    if name in API:
        import importlib

        return getattr(importlib.import_module(API[name]), name)
    raise AttributeError(f"module 'ur4rec_recbole' has no attribute {name!r}")
