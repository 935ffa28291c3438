"""What every text backend receives and must return.

A backend turns item fields into knowledge texts and training-portion
histories into preference texts. The template backend is deterministic;
LLM backends implement the same two methods.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import numpy as np
from recbole.utils import FeatureType

from ur4rec_recbole.texts.records import TextRecord

# token -> field -> values (a token field has one value, a token_seq field several)
ItemFields = Mapping[str, Mapping[str, Sequence[str]]]
# user token -> that user's training-portion item tokens, oldest first
Histories = Mapping[str, Sequence[str]]


class TextBackend(Protocol):
    """Interface of a text source (``template`` here; LLMs slot in the same way)."""

    name: str
    version: str

    def item_texts(self, items: ItemFields) -> list[TextRecord]:
        """One knowledge record per item that has at least one non-empty field."""

    def user_texts(self, histories: Histories, items: ItemFields) -> list[TextRecord]:
        """One preference record per user with a non-empty training history."""


def join_values(values: Sequence[str], categorical: bool) -> str:
    """Categorical fields (genres) are listed with commas; others are free text split on spaces (titles)."""
    return (", " if categorical else " ").join(values)


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def item_fields(dataset, fields: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """Raw values of ``fields`` for every item of a built RecBole dataset, keyed by raw token.

    Padding and missing values are dropped, so an item absent from the
    ``.item`` file maps to empty lists (and gets no text).
    """
    feat = dataset.item_feat
    if feat is None:
        raise ValueError(
            f"item_text_fields {list(fields)} need a {dataset.dataset_name}.item file in "
            f"{dataset.dataset_path}, and none was loaded (check load_col: item)"
        )
    iid = dataset.iid_field
    available = [f for f in feat.columns if f != iid]
    for name in fields:
        if name not in feat.columns:
            raise ValueError(
                f"item_text_fields names {name!r}, which is not a loaded column of "
                f"{dataset.dataset_path}/{dataset.dataset_name}.item (loaded: {available}; "
                f"check load_col: item)"
            )
    tokens = dataset.field2id_token[iid]
    item_ids = feat[iid].numpy()
    table: dict[str, dict[str, list[str]]] = {}
    columns = {}
    for name in fields:
        values = feat[name].numpy()
        ftype = dataset.field2type[name]
        if ftype in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ):
            vocab = dataset.field2id_token[name]
            columns[name] = lambda row, v=values, vocab=vocab: [
                str(vocab[t]) for t in np.atleast_1d(v[row]) if t != 0
            ]
        else:  # float / float_seq: keep finite values
            columns[name] = lambda row, v=values: [
                _format_number(x) for x in np.atleast_1d(v[row]) if np.isfinite(x)
            ]
    for row, item_id in enumerate(item_ids):
        if item_id == 0:
            continue
        table[str(tokens[item_id])] = {name: columns[name](row) for name in fields}
    return table


def histories_by_token(dataset, histories: Mapping[int, np.ndarray]) -> dict[str, list[str]]:
    """Internal-id histories -> raw-token histories."""
    users = dataset.field2id_token[dataset.uid_field]
    items = dataset.field2id_token[dataset.iid_field]
    return {str(users[u]): [str(items[i]) for i in seq] for u, seq in histories.items()}
