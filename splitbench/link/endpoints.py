"""The two halves of a split model: what the edge sends and what the server does with it.

A :class:`SplitSetup` names one configuration: a model and its weights, where it is cut,
and how the crossing tensor travels. ``at`` is a cut of the traced graph, ``input`` (the
classic baseline: the model's input picture goes up as a JPEG and the whole model runs on
the server) or ``edge`` (the whole model on the edge, nothing sent). :class:`Sender` runs
head → quantise → encode; :class:`Receiver` runs decode → dequantise → tail → top-5 (a
classifier) or the detector's own post-processing (:mod:`splitbench.link.tasks`), with the
same functions and memory layout as ``splitbench codec``, so that a prediction over the link
is the prediction that ``codec`` scores.

A detector's edge holds each image as a :class:`Picture`: the exact input ``eval`` feeds the
model (yolov4_tiny's darknet resize works on the float image, not on the 8-bit picture an
``input`` upload carries) and the original image's size, which each request names so that
the server draws the boxes in the original image's pixels.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from splitbench.codecs.base import codec_class
from splitbench.codecs.cache import JPEG_QUALITY, jpeg_file
from splitbench.codecs.features import check_layout
from splitbench.data import Preprocessing, load_rgb_image
from splitbench.errors import SplitbenchError
from splitbench.link.protocol import ProtocolError, Request
from splitbench.link.tasks import Answers, answers_for
from splitbench.split import feature_shape, preprocessing_for
from splitbench.transport import TensorCodec, is_learned, learned_file, takes_parameter, tensor_codec
from splitbench.weights import sha256_of
from splitbench.zoo import ZooModel

INPUT, EDGE = "input", "edge"


@dataclass(frozen=True)
class SplitSetup:
    """A model cut at ``at`` with the crossing tensor sent as ``codec``: any ``--codec`` string of
    :mod:`splitbench.transport` (a baseline, an image codec, ``learned:…`` or ``FILE.py:FUNCTION``)."""

    at: str
    codec: str = "none"
    param: int | None = None
    layout: str = "gray"
    bits: int = 8
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.at == INPUT and self.codec != "jpeg":
            raise SplitbenchError(f"--at input sends the picture as JPEG; --codec {self.codec} codes features")
        if self.at == INPUT:
            return
        if self.pictured:
            codec_class(self.codec)  # an unknown name fails here, with close matches
            check_layout(self.layout)
        elif is_learned(self.codec) and not (path := learned_file(self.codec)).is_file():
            raise SplitbenchError(f"--codec {self.codec}: learned codec file not found: {path}")

    @property
    def pictured(self) -> bool:
        """Whether the tensor travels as a picture of an image codec (which takes a layout and bits)."""
        return self.at not in (INPUT, EDGE) and takes_parameter(self.codec)

    def tensor_codec(self, shape: tuple[int, ...]) -> TensorCodec | None:
        """How a tensor of ``shape`` crosses; None for ``input`` (a JPEG) and ``edge`` (nothing)."""
        if self.at in (INPUT, EDGE):
            return None
        return tensor_codec(self.codec, shape, self.param, self.layout, self.bits, self.options)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"at": self.at, "codec": self.codec}
        if self.pictured:
            described |= {"param": self.param, "layout": self.layout, "bits": self.bits, **dict(self.options)}
        elif self.at not in (INPUT, EDGE) and is_learned(self.codec):  # which trained codec, exactly
            path = learned_file(self.codec)
            described |= {"file": path.name, "sha256": sha256_of(path)}  # the name only: info goes to peers
        if self.at == INPUT:
            described["jpeg_quality"] = JPEG_QUALITY
        return described

    @property
    def label(self) -> str:
        if self.at in (INPUT, EDGE):
            return self.at
        param = f"@{self.param}" if self.param is not None else ""
        layout = f"/{self.layout}" if self.pictured else ""
        return f"{self.at}:{self.codec}{param}{layout}"


@dataclass
class Sent:
    """What the edge sends for one picture, and its edge-side stage times (s)."""

    payload: bytes
    header: dict[str, Any]
    head_s: float
    encode_s: float


@dataclass(frozen=True)
class Picture:
    """A detector's input for one image (what the edge holds; a classifier's is the PIL picture).

    Attributes:
        picture: the 8-bit picture the model sees (what ``--at input`` uploads as a JPEG).
        tensor: 3×H×W, the input ``eval`` feeds the model (for yolov4_tiny, darknet's resize of
            the float image rather than the 8-bit picture).
        size: the original image's (height, width), where the server draws its boxes.
    """

    picture: Image.Image
    tensor: torch.Tensor
    size: tuple[int, int]


def model_pictures(model: ZooModel, images: Dataset, preprocess: str = "seed") -> list[tuple[Any, int]]:
    """Every image of ``images`` as the model's input picture, with its label: decoded once per run.

    A detector's are :class:`Picture` s, sized as the data set's records give each image (the
    size ``eval`` scales its boxes to)."""
    preprocessing = preprocessing_for(model, preprocess)
    if model.spec.task != "detection":
        geometry = preprocessing.geometry()
        return [(geometry(image), label) for image, label in (images[i] for i in range(len(images)))]
    pictures = []
    for index in range(len(images)):
        image, label = images[index]
        tensor, picture = preprocessing.input_and_picture(image)
        size = images.image_sizes([label])[0] if hasattr(images, "image_sizes") else (image.height, image.width)
        pictures.append((Picture(picture, tensor, size), label))
    return pictures


class _Half:
    def __init__(self, model: ZooModel, setup: SplitSetup, preprocess: str = "seed") -> None:
        self.model, self.setup = model, setup
        self.answers: Answers = answers_for(model)
        self.preprocessing: Preprocessing = preprocessing_for(model, preprocess)
        self._to_tensor = self.preprocessing.to_tensor()  # built once: it runs for every picture
        if setup.at in (INPUT, EDGE):
            self.shape: tuple[int, ...] = (3, self.preprocessing.crop, self.preprocessing.crop)
        elif setup.pictured:  # an image codec carries C×H×W planes only
            self.shape = feature_shape(model, setup.at, self.preprocessing)
        else:  # the traced graph measured every cut's tensor at this input size
            self.shape = tuple(model.cuts(self.preprocessing.crop).resolve(setup.at).shape)
        self.transport: TensorCodec | None = setup.tensor_codec(self.shape)

    @staticmethod
    def _prepared(module: torch.nn.Module) -> torch.nn.Module:
        return module.to(memory_format=torch.channels_last).eval()  # as codec sweeps run it

    def _input_tensor(self, picture: Image.Image | Picture) -> torch.Tensor:
        tensor = picture.tensor if isinstance(picture, Picture) else self._to_tensor(picture)
        return tensor.unsqueeze(0).contiguous(memory_format=torch.channels_last)


class Sender(_Half):
    """The edge: head (or nothing, or the whole model), then the codec's encoder."""

    def __init__(self, model: ZooModel, setup: SplitSetup, preprocess: str = "seed") -> None:
        super().__init__(model, setup, preprocess)
        if setup.at == EDGE:
            self.head: torch.nn.Module | None = self._prepared(model.model)
        elif setup.at == INPUT:
            self.head = None
        else:
            self.head = self._prepared(model.cuts().head(setup.at))

    def picture(self, image: Image.Image) -> Image.Image | Picture:
        """The model's input picture (seed 003's resize, or the model's own geometry); a
        detector's :class:`Picture`."""
        if self.answers.task != "detection":
            return self.preprocessing.geometry()(image)
        tensor, picture = self.preprocessing.input_and_picture(image)
        return Picture(picture, tensor, (image.height, image.width))

    def local(self, picture: Image.Image | Picture) -> tuple[dict[str, Any], float]:
        """``edge``: the whole model and its task's answer here (a classifier's argmax, a
        detector's post-processing: what its server would reply), and the time it took."""
        began = time.perf_counter()
        with torch.inference_mode():
            outputs = self.head(self._input_tensor(picture))  # type: ignore[misc]
            answer = self.answers.local(outputs, picture.size if isinstance(picture, Picture) else None)
        return answer, time.perf_counter() - began

    def send(self, picture: Image.Image | Picture, index: int = 0) -> Sent:
        """Head and encoder on one picture: the payload and the request's header fields."""
        header: dict[str, Any] = {"input": "features", "codec": self.setup.codec, "shape": list(self.shape)}
        if isinstance(picture, Picture):  # a detector's server draws the boxes in the original's pixels
            header["image_size"] = list(picture.size)
        if self.setup.at == INPUT:
            began = time.perf_counter()
            payload = jpeg_file(picture.picture if isinstance(picture, Picture) else picture)
            return Sent(payload, {**header, "input": "image"}, 0.0, time.perf_counter() - began)
        began = time.perf_counter()
        with torch.inference_mode():
            features = self.head(self._input_tensor(picture))[0].contiguous().numpy()  # type: ignore[misc]
        headed = time.perf_counter()
        payload = self.transport.encode(features)  # type: ignore[union-attr]
        return Sent(payload, header, headed - began, time.perf_counter() - headed)


class Receiver(_Half):
    """The server: decoder and tail (or the whole model, for ``input``)."""

    def __init__(self, model: ZooModel, setup: SplitSetup, preprocess: str = "seed") -> None:
        if setup.at == EDGE:
            raise SplitbenchError("--at edge runs the whole model on the edge: there is nothing to serve")
        super().__init__(model, setup, preprocess)
        self.tail = self._prepared(model.model if setup.at == INPUT else model.cuts().tail(setup.at))
        self.expected_bytes = self.transport.expected_bytes if self.transport is not None else None

    def answer(self, request: Request) -> dict[str, Any]:
        """Top-5 (or a detector's detections) for one request; a payload that does not fit this
        setup raises :class:`ProtocolError`."""
        wanted_input = "image" if self.setup.at == INPUT else "features"
        if request.input != wanted_input or request.codec != self.setup.codec:
            raise ProtocolError(f"this server takes {wanted_input} coded as {self.setup.codec}, "
                                f"got {request.input} coded as {request.codec}")
        if request.shape != self.shape:
            raise ProtocolError(f"this server takes shape {list(self.shape)}, got {list(request.shape or ())}")
        began = time.perf_counter()
        tensor = self._decode(request.payload)
        decoded = time.perf_counter()
        with torch.inference_mode():  # the tail and the task's answer: top-5, or a detector's post-processing
            answer = self.answers.reply(self.tail(tensor), request.image_size)
        return {**answer, "server_s": {"decode": decoded - began, "tail": time.perf_counter() - decoded}}

    def _decode(self, payload: bytes) -> torch.Tensor:
        if self.setup.at == INPUT:
            return self._input_tensor(self._picture(payload))
        try:  # every decoder checks the bytes before it allocates what they ask for
            features = self.transport.decode(payload)  # type: ignore[union-attr]
        except SplitbenchError as error:
            raise ProtocolError(str(error)) from None
        tensor = torch.from_numpy(np.ascontiguousarray(features)).unsqueeze(0)
        return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor

    def _picture(self, payload: bytes) -> Image.Image:
        def model_sized_jpeg(image: Image.Image) -> None:
            # the size is in the header: refuse anything but the model's picture before decoding it
            if image.format != "JPEG" or image.size != (self.shape[2], self.shape[1]):
                raise ProtocolError(f"the image must be a {self.shape[2]}x{self.shape[1]} JPEG, "
                                    f"got {image.format} {image.size[0]}x{image.size[1]}")

        try:  # the data sets' decoder: the same picture as codec and eval decode, bombs refused
            return load_rgb_image(io.BytesIO(payload), check=model_sized_jpeg)
        except SplitbenchError as error:  # PIL's many ways of saying "not an image", as one line
            raise ProtocolError(f"cannot decode the image: {error}") from None

    def info(self, weights_sha256: str | None) -> dict[str, Any]:
        return {"model": self.model.spec.name, "task": self.answers.task, "weights_sha256": weights_sha256,
                "shape": list(self.shape),
                "preprocessing": self.preprocessing.describe(), **self.setup.describe()}
