"""Recommendations from a trained checkpoint: known users, new histories, candidate lists, explanations."""

from ur4rec_recbole.serve.recommender import Recommender
from ur4rec_recbole.serve.results import (Explanation, Recommendation, RecommendedItem, Slot,
                                                  format_table, write_recommendations)

__all__ = ["Explanation", "Recommendation", "RecommendedItem", "Recommender", "Slot", "format_table",
           "write_recommendations"]
