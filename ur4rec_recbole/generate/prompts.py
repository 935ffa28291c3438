"""Versioned prompt templates (``generate/prompts/*.yaml``) and the prompts built from them.

The wording lives in the yaml files, not in code; each file's ``version`` goes
into every record's provenance and every cache key, so editing a prompt and
bumping its version regenerates exactly the texts it affects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from ur4rec_recbole.texts.base import Histories, ItemFields, join_values
from ur4rec_recbole.texts.records import ITEM_KIND, USER_KIND

PROMPT_DIR = Path(__file__).with_name("prompts")
_REQUIRED = {"version": str, "max_tokens": int, "max_chars": int, "system": str, "user": str}


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt file: system and user messages with ``{placeholders}``."""

    kind: str
    version: str
    max_tokens: int
    max_chars: int
    system: str
    user: str

    @classmethod
    def load(cls, kind: str, folder: str | Path = PROMPT_DIR) -> "PromptTemplate":
        """Read ``<folder>/<kind>.yaml``; every missing or mistyped key is an error naming the file."""
        path = Path(folder) / f"{kind}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"prompt template {path} does not exist (kinds: {USER_KIND}, {ITEM_KIND})")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, typ in _REQUIRED.items():
            if not isinstance(data.get(key), typ):
                raise ValueError(f"{path}: '{key}' must be a {typ.__name__}, got {data.get(key)!r}")
        return cls(kind, data["version"], data["max_tokens"], data["max_chars"], data["system"], data["user"])


@dataclass(frozen=True)
class Prompt:
    """A rendered request for one user or item: what is sent, and its cache identity."""

    kind: str
    token: str
    version: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    max_tokens: int
    max_chars: int
    cutoff: int | None = None  # user prompts: the training-portion prefix the history lines come from

    @property
    def ident(self) -> tuple[str, str, int | None]:
        """What the prompt is for: (kind, token, cutoff); one user has a prompt per profile cut-off."""
        return self.kind, self.token, self.cutoff

    @property
    def text_hash(self) -> str:
        """SHA-256 of the exact messages: part of the cache key (a user prompt's messages list the items
        of its cut-off's prefix, so the key covers the cut-off)."""
        return hashlib.sha256(json.dumps(self.messages, ensure_ascii=False).encode()).hexdigest()

    def as_openai(self) -> list[dict]:
        return [{"role": role, "content": content} for role, content in self.messages]


class PromptBuilder:
    """Prompts for items (their fields) and users (their training-portion history).

    ``item_text_fields`` are shown for every item, in order; fields in
    ``categorical_fields`` are listed with commas (genres), others joined by
    spaces (titles). Only the last ``history_window`` items of the history
    that it is *given* reach a user prompt; callers pass training portions only.
    """

    def __init__(self, item_text_fields: Sequence[str], categorical_fields: Sequence[str],
                 field_labels: Mapping[str, str] | None, history_window: int,
                 prompt_dir: str | Path = PROMPT_DIR) -> None:
        self.fields = list(item_text_fields)
        self.categorical = set(categorical_fields)
        self.labels = dict(field_labels or {})
        self.window = history_window
        self.user_template = PromptTemplate.load(USER_KIND, prompt_dir)
        self.item_template = PromptTemplate.load(ITEM_KIND, prompt_dir)

    def describe(self, fields: Mapping[str, Sequence[str]]) -> str:
        """``title: Toy Story; year: 1995; genres: Animation, Comedy`` (empty fields left out)."""
        return "; ".join(
            f"{self.labels.get(name, name.replace('_', ' '))}: {join_values(fields[name], name in self.categorical)}"
            for name in self.fields if fields.get(name)
        )

    def _render(self, template: PromptTemplate, token: str, **values: str) -> Prompt:
        messages = (("system", template.system.strip()), ("user", template.user.format(**values).strip()))
        return Prompt(template.kind, token, template.version, messages, template.max_tokens, template.max_chars)

    def item_prompts(self, items: ItemFields) -> list[Prompt]:
        """One prompt per item with at least one non-empty field."""
        described = ((token, self.describe(fields)) for token, fields in items.items())
        return [self._render(self.item_template, token, item=text) for token, text in described if text]

    def user_prompts(self, histories: Histories, items: ItemFields) -> list[Prompt]:
        """One prompt per user whose recent training history has at least one described item."""
        prompts = []
        for token, history in histories.items():
            lines = [self.describe(items.get(item, {})) for item in history[-self.window:]]
            lines = [f"- {line}" for line in lines if line]
            if lines:
                prompts.append(self._render(self.user_template, token, history="\n".join(lines)))
        return prompts
