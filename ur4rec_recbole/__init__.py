"""UR4Rec for RecBole: user-preference retrieval over LLM-written texts, fused with SASRec."""

import os

# OpenMP threads that spin while they wait take the cores from each other and from every other
# process: with one other busy process an epoch took 4x (and up to 20x under more load) its quiet
# time. PASSIVE makes waiting threads sleep (README, "Speed"). libgomp reads this when torch loads,
# so it is set here, before any module of this package imports torch; a value already set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
