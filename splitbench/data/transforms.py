"""Evaluation preprocessing, as a value that can be written next to the results it produced.

Accuracy depends on resize, crop, interpolation and normalisation as much as on the weights
(a 256→224 bilinear ImageNet pipeline and a 224 bicubic one differ by a point or more), so
preprocessing is a frozen dataclass whose :meth:`Preprocessing.describe` goes into result
sidecars, and whose :meth:`Preprocessing.transform` builds the matching torchvision pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from splitbench.errors import SplitbenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}
# pil: torchvision's Resize on the decoded picture (antialiased, rounded to 8 bits), as
# classifiers are evaluated; darknet: darknet's resize_image, bilinear on the [0, 1] float
# image with corner pixels aligned and no antialiasing, as YOLO was trained and scored.
RESAMPLINGS = ("pil", "darknet")


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side to ``resize`` (skipped when ``None``), center-crop ``crop``, normalise.

    ImageNet evaluation is ``Preprocessing(crop=224, resize=256)``; CIFAR-10 images are already
    32×32, so ``Preprocessing(crop=32, resize=None, mean=..., std=...)`` only normalises. Use the
    mean and std that the weights were trained with, which is not always the dataset's own.
    ``square=True`` resizes the whole image to ``crop``×``crop`` instead, ignoring its aspect
    ratio, as seed 003 does (eq. 5–6: "resize(input)" to 224×224); ``resize`` is then unused.
    ``resampling="darknet"`` (with ``square``) stretches the way darknet does (see
    :data:`RESAMPLINGS`): the model's input is then resized from the float image, not from the
    8-bit picture that :meth:`geometry` returns.
    """

    crop: int
    resize: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    square: bool = False
    resampling: str = "pil"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise SplitbenchError(
                f"unknown interpolation {self.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}"
            )
        if self.resampling not in RESAMPLINGS or (self.resampling == "darknet" and not self.square):
            raise SplitbenchError(f"resampling {self.resampling!r} needs one of {', '.join(RESAMPLINGS)}, "
                                  "and darknet's stretches the whole image (square=True)")
        if self.crop <= 0 or (self.resize is not None and self.resize <= 0):
            raise SplitbenchError(f"crop and resize must be positive, got crop={self.crop}, resize={self.resize}")

    def transform(self) -> transforms.Compose:
        """PIL image → normalised float tensor of shape 3×crop×crop."""
        if self.resampling == "darknet":
            return transforms.Compose([transforms.ToTensor(), self._darknet_resize,
                                       transforms.Normalize(self.mean, self.std)])
        return transforms.Compose([self.geometry(), self.to_tensor()])

    def input_and_picture(self, image: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The model's input and the 8-bit picture it shows (what an upload would carry as JPEG).

        One resize where the input is made from the picture; darknet's resizes the float image
        for the input, and the picture is that resize rounded to 8 bits.
        """
        if self.resampling == "darknet":
            resized = self._darknet_resize(transforms.functional.to_tensor(image))
            picture = transforms.functional.to_pil_image(resized.mul(255).round().clamp(0, 255).byte())
            return transforms.functional.normalize(resized, self.mean, self.std), picture
        picture = self.geometry()(image)
        return self.to_tensor()(picture), picture

    def _darknet_picture(self, image: Image.Image) -> Image.Image:
        return self.input_and_picture(image)[1]

    def _darknet_resize(self, image: torch.Tensor) -> torch.Tensor:
        """A 3×H×W float image stretched to crop×crop as darknet's ``resize_image`` does."""
        return F.interpolate(image[None], size=(self.crop, self.crop), mode="bilinear", align_corners=True,
                             antialias=False)[0]

    def to_tensor(self) -> transforms.Compose:
        """The model's picture (what :meth:`geometry` makes) → normalised float tensor."""
        return transforms.Compose([transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])

    def geometry(self) -> transforms.Compose:
        """PIL image → the crop×crop PIL image that the model sees (before normalisation)."""
        interpolation = INTERPOLATIONS[self.interpolation]
        if self.resampling == "darknet":
            return transforms.Compose([self._darknet_picture])
        if self.square:
            return transforms.Compose([transforms.Resize((self.crop, self.crop), interpolation=interpolation, antialias=True)])
        steps: list[Any] = []
        if self.resize is not None:
            # An int size resizes the short side and keeps the aspect ratio; antialias=True
            # makes tensor and PIL inputs agree (PIL always antialiases when downscaling).
            steps.append(transforms.Resize(self.resize, interpolation=interpolation, antialias=True))
        steps.append(transforms.CenterCrop(self.crop))
        return transforms.Compose(steps)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of the preprocessing, for result sidecars."""
        described: dict[str, Any] = {
            "resize_short_side": self.resize,
            "center_crop": self.crop,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        if self.square:  # only when set, so that other commands' sidecars keep their keys
            described = {"resize_to_square": self.crop, **{k: v for k, v in described.items()
                                                          if k not in ("resize_short_side", "center_crop")}}
        if self.resampling != "pil":  # likewise: the feature caches key on this record
            described["resampling"] = self.resampling
        return described
