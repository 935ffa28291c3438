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
