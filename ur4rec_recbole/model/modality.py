"""Items seen through text and images (config ``modalities`` and ``modality_fusion``).

Each modality has its own adapter into the hidden size ``H`` (text: the
retriever's ``item_adapter``; image: ``image_adapter`` here). With one
modality the retriever works as in the text model. With two, the memory
holds both the history's text and image representations (image slots of
items without an image are masked) and a modality fusion scores candidates.
Items without an image never get a stand-in vector: the mask removes their
image from every sum and softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ItemViews:
    """Per-modality item representations of the whole catalogue."""

    text: torch.Tensor | None  # [N, H] adapted knowledge (ID-based where no text)
    text_mask: torch.Tensor | None  # [N] True where an item has a knowledge text
    image: torch.Tensor | None  # [N, H] adapted image vector (meaningless where image_mask is False)
    image_mask: torch.Tensor | None  # [N] True where an item has an image
    single: torch.Tensor | None  # [N, H] the representation when only one modality is used

    def both(self) -> torch.Tensor:
        """Items that have a text and an image. ``[N]`` bool"""
        return self.text_mask & self.image_mask

    def take(self, ids: torch.Tensor) -> "ItemViews":
        """The views of the items ``ids`` ``[U]`` only (explanations score a few items, not the catalogue)."""
        return ItemViews(*(None if t is None else t[ids]
                           for t in (self.text, self.text_mask, self.image, self.image_mask, self.single)))


class ImageAdapter(nn.Sequential):
    """Frozen image vector ``[N, D_img]`` -> item representation ``[N, H]`` (mirrors the text adapter)."""

    def __init__(self, image_dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(image_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


def proxy_cosine(proxies: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``cos(proxy_k, item)`` for every proxy: ``[P, K, H] x [N, H] -> [P, K, N]``."""
    return torch.einsum("pkh,nh->pkn", F.normalize(proxies, dim=-1), F.normalize(items, dim=-1))


class ConcatFusion(nn.Module):
    """``concat``: ``W [text; image]``, the image half zeroed where an item has none."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * hidden, hidden)

    def items(self, text, image, has_image) -> torch.Tensor:
        image = image * has_image[:, None]  # masked, not replaced: no learnable "missing" input
        return self.proj(torch.cat([text, image], dim=-1))  # [N, H]

    def proxy_scores(self, proxies, text, image, has_image) -> torch.Tensor:
        """Each proxy's cosine with each item. ``[P, K, N]``"""
        return proxy_cosine(proxies, self.items(text, image, has_image))

    def score(self, proxies, text, image, has_image) -> torch.Tensor:
        return self.proxy_scores(proxies, text, image, has_image).amax(dim=1)  # [P, N]


class GatedFusion(ConcatFusion):
    """``gated``: ``g * text + (1 - g) * image`` with a per-dimension gate from both; text alone without image."""

    def items(self, text, image, has_image) -> torch.Tensor:
        gate = torch.sigmoid(self.proj(torch.cat([text, image], dim=-1)))  # [N, H]
        return torch.where(has_image[:, None], gate * text + (1 - gate) * image, text)


class AttentionFusion(nn.Module):
    """``attention``: each proxy attends over the candidate's modality tokens (text, image).

    The proxies are the read-out of the user's memory (preference, history
    text and history image slots), so the weight of an item's image versus its
    text depends on the user and on each proxy. The candidate for proxy ``k``
    is ``a_k,text * text + a_k,image * image`` (softmax over the item's two
    tokens, i.e. a sigmoid of their logit difference; the image token is masked
    where there is none), scored by cosine as usual. With ``d = image - text``
    the mixture is ``text + a d``, so its cosine comes from three dot products
    per (proxy, item) and no ``[P, K, N, H]`` tensor is built.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.scale = 1.0 / math.sqrt(hidden)

    def image_weight(self, proxies, text, image, has_image) -> torch.Tensor:
        """Attention ``a_k,image`` of each proxy on each item's image token (0 without one). ``[P, K, N]``"""
        key_gap = self.key(image) - self.key(text)  # [N, H] logit(image) - logit(text) = query . key_gap
        logit = torch.einsum("pkh,nh->pkn", self.query(proxies), key_gap) * self.scale  # [P, K, N]
        return torch.sigmoid(logit) * has_image  # masked: exactly 0 where there is no image

    def weights(self, proxies, text, image, has_image) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention of each proxy on each item's text and image token. ``[P, K, N]`` each"""
        a_image = self.image_weight(proxies, text, image, has_image)
        return 1 - a_image, a_image

    def score(self, proxies, text, image, has_image) -> torch.Tensor:
        return self.proxy_scores(proxies, text, image, has_image).amax(dim=1)  # [P, N]

    def proxy_scores(self, proxies, text, image, has_image) -> torch.Tensor:
        """Each proxy's cosine with its mixture of each item's tokens. ``[P, K, N]``"""
        a = self.image_weight(proxies, text, image, has_image)  # [P, K, N]
        gap = image - text  # [N, H]
        dots = torch.einsum("pkh,nh->pkn", F.normalize(proxies, dim=-1), torch.cat([text, gap]))  # [P, K, 2N]
        u_text, u_gap = dots.split(text.shape[0], dim=-1)  # [P, K, N] each
        dot = u_text + a * u_gap  # unit proxy . (text + a gap)
        norm2 = text.pow(2).sum(-1) + a * (2 * (text * gap).sum(-1) + a * gap.pow(2).sum(-1))  # |text + a gap|^2
        return dot * norm2.clamp_min(1e-12).rsqrt()  # [P, K, N]


MODALITY_FUSIONS: dict[str, type[nn.Module]] = {
    "concat": ConcatFusion,
    "gated": GatedFusion,
    "attention": AttentionFusion,
}
