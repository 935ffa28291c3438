"""Vectors: sentence and image encoding with content-hash caches, and aligned feature tables."""

from ur4rec_recbole.features.pipeline import FeatureSet, prepare_features, vector_tables

__all__ = ["FeatureSet", "prepare_features", "vector_tables"]
