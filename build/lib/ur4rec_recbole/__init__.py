"""UR4Rec for RecBole: user-preference retrieval over LLM-written texts, fused with SASRec."""

__version__ = "0.1.0"
