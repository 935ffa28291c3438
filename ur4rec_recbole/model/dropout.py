"""Dropout with torch's own masks, drawn faster on the CPU.

On CPUs where torch's ``bernoulli_`` takes its serial default kernel (not
MKL's, which torch uses on Intel CPUs only), dropout spends most of its time
drawing the mask (docs/results/speed.md: 8-22% of a training step).
That kernel draws one float64 uniform per element, in memory order, and keeps
the element where it is below ``1 - p``; ``uniform_`` on a float64 tensor
draws the same numbers from the same generator, faster. :class:`SameMaskDropout` builds the mask
that way, so outputs, gradients and the generator's state afterwards are
bitwise those of ``nn.Dropout`` (a run trains and scores exactly as before,
only sooner). Where the two draws differ (another kernel), or off the CPU, it
is ``nn.Dropout``.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


@functools.lru_cache(maxsize=None)
def uniform_draws_are_bernoulli_draws() -> bool:
    """Whether this torch build's CPU ``bernoulli_(q)`` equals ``uniform_() < q`` on float64 draws (checked once,
    on a private generator, at a small and a large size)."""
    for size, q in ((7, 0.3), (100_003, 0.9)):
        first, second = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        torch_mask = torch.empty(size).bernoulli_(q, generator=first)
        uniform_mask = (torch.empty(size, dtype=torch.float64).uniform_(generator=second) < q).float()
        if not torch.equal(torch_mask, uniform_mask) or not torch.equal(torch.rand(3, generator=first),
                                                                          torch.rand(3, generator=second)):
            return False
    return True


class SameMaskDropout(nn.Dropout):
    """``nn.Dropout`` with the same results; on the CPU its mask comes from float64 ``uniform_`` (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or self.inplace or not 0.0 < self.p < 1.0 or x.device.type != "cpu"
                or x.dtype not in (torch.float32, torch.float64) or not uniform_draws_are_bernoulli_draws()):
            return super().forward(x)
        keep = 1.0 - self.p
        # torch: noise = empty_like(x).bernoulli_(keep).div_(keep); return x * noise
        noise = (torch.empty_like(x, dtype=torch.float64).uniform_() < keep).to(x.dtype).div_(keep)
        return x * noise


def _replace(module: nn.Module, kind: type[nn.Dropout], make: type[nn.Dropout]) -> int:
    """Replace every layer of exactly type ``kind`` inside ``module`` by ``make(p, inplace)``; returns how many."""
    replaced = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is kind:
                setattr(parent, name, make(child.p, child.inplace))
                replaced += 1
    return replaced


def use_same_mask_dropout(module: nn.Module) -> int:
    """Replace every ``nn.Dropout`` inside ``module`` (in place) by :class:`SameMaskDropout`; returns how many.
    Other dropout classes (and ones already replaced) are left alone, so a second call changes nothing."""
    return _replace(module, nn.Dropout, SameMaskDropout)


def use_torch_dropout(module: nn.Module) -> int:
    """The inverse: every :class:`SameMaskDropout` back to ``nn.Dropout`` (to time or check one against the other)."""
    return _replace(module, SameMaskDropout, nn.Dropout)
