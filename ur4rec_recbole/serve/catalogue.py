"""What recommendations are named with: tokens, titles, histories and preference texts of a dataset.

Requests and answers speak raw tokens (as in the atomic files); the model
speaks RecBole's internal ids. A known user's history is the whole sequence
observed for them (training, validation and test items: at serving time
everything observed is input). A new user's preference profile is written
from their history by the template backend and encoded with the sentence
encoder the model was trained with.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features.text_vectors import encode_texts
from ur4rec_recbole.texts.base import item_fields, join_values
from ur4rec_recbole.texts.build import template_backend
from ur4rec_recbole.texts.records import USER_KIND, read_records, text_path

NEW_USER = "<new user>"  # the token a request-time profile is written for


def title_field(config, dataset, explicit: str | None = None) -> str | None:
    """The ``.item`` column shown as a title: ``explicit``, else a column named or labelled (``text_field_labels``) ``title``."""
    columns = [c for c in (dataset.item_feat.columns if dataset.item_feat is not None else ()) if c != dataset.iid_field]
    if explicit is not None:
        if explicit not in columns:
            raise InputError(f"title field {explicit!r} is not a loaded column of {dataset.dataset_name}.item "
                             f"(loaded: {columns}); name one of them or check load_col")
        return explicit
    labels = config["text_field_labels"] or {}
    return next((c for c in columns if c == "title" or labels.get(c) == "title"), None)


class Catalogue:
    """Tokens, titles, full histories and preference texts of one built dataset."""

    def __init__(self, config, dataset, title: str | None = None) -> None:
        self.config, self.dataset = config, dataset
        self.name = f"dataset '{config['dataset']}' in {config['data_path']}"
        self.user_tokens = np.asarray(dataset.field2id_token[dataset.uid_field])  # id -> token; 0 is padding
        self.item_tokens = np.asarray(dataset.field2id_token[dataset.iid_field])
        self.user_ids = {str(t): i for i, t in enumerate(self.user_tokens) if i > 0}
        self.item_ids = {str(t): i for i, t in enumerate(self.item_tokens) if i > 0}
        self.histories = dataset.user_sequences  # internal user id -> every item observed, oldest first (SplitDataset)
        field = title_field(config, dataset, title)
        titles = item_fields(dataset, [field]) if field is not None else {}
        self.titles = [None] + [join_values(titles[t][field], categorical=False) or None if t in titles else None
                                for t in self.item_tokens[1:]]  # id -> title or None

    # -- tokens -> ids ------------------------------------------------------
    def users(self) -> list[str]:
        """Tokens of every user with a history, in id order."""
        return [str(self.user_tokens[u]) for u in sorted(self.histories)]

    def resolve(self, users: Sequence[str] = (), items: Sequence[Sequence[str]] = ()) -> tuple[list[int], list[np.ndarray]]:
        """Internal ids of user tokens and of item-token lists; every unknown token is named in one error."""
        unknown_users = [u for u in users if self.user_ids.get(str(u)) not in self.histories]
        unknown_items = [t for tokens in items for t in tokens if str(t) not in self.item_ids]
        problems = []
        if unknown_users:
            problems.append(f"unknown user token(s) {_listed(unknown_users)}: not users with a history in {self.name}")
        if unknown_items:
            problems.append(f"unknown item token(s) {_listed(unknown_items)}: not items of {self.name}")
        if problems:
            raise InputError("; ".join(problems))
        return ([self.user_ids[str(u)] for u in users],
                [np.asarray([self.item_ids[str(t)] for t in tokens], dtype=np.int64) for tokens in items])

    # -- preference texts ---------------------------------------------------
    @cached_property
    def preference_texts(self) -> dict[str, str]:
        """Known users' stored preference texts (``text_source``), by token; empty for RecBole's models."""
        if self.config["text_source"] is None:
            return {}
        path = text_path(self.config["data_path"], self.config["dataset"], USER_KIND, self.config["text_source"])
        if not Path(path).is_file():
            return {}
        newest = sorted(read_records(path).values(), key=lambda r: r.cutoff or 0)  # the last one per user wins
        return {record.token: record.text for record in newest}

    @cached_property
    def _template(self):
        backend = template_backend(self.config)  # one clear error when the dataset has no profile fields
        fields = sorted(set(self.config["item_text_fields"]) | set(self.config["user_profile_fields"]))
        return backend, item_fields(self.dataset, fields)

    def profile_text(self, history: np.ndarray) -> str | None:
        """The template preference profile of a history (internal ids), or None when it says nothing."""
        backend, items = self._template
        records = backend.user_texts({NEW_USER: [str(self.item_tokens[i]) for i in history]}, items)
        return records[0].text if records else None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence vectors of ``texts`` with the model's encoder and its settings. ``[len(texts), D]``"""
        c = self.config
        return encode_texts(texts, c["text_encoder"], c["encoder_device"], c["encoder_precision"],
                            c["encoder_max_length"], c["encoder_batch_tokens"], c["encoder_batch_size"], progress=False)


def _listed(tokens: Sequence[str], most: int = 10) -> str:
    shown = ", ".join(repr(str(t)) for t in list(dict.fromkeys(tokens))[:most])
    extra = len(set(map(str, tokens))) - most
    return shown + (f" and {extra} more" if extra > 0 else "")
