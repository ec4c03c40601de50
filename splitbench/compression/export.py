"""A trained feature codec as one file: safetensors weights plus the recipe that rebuilds it.

``rd`` writes one next to each evaluated point (``codec-epochs{E}.safetensors`` in the point's
folder); ``--codec learned:FILE`` (:mod:`splitbench.transport`) reads it back. The file holds
the codec's tensors (its entropy models' CDF tables included, so the range coder needs no
rebuild) and, in the safetensors metadata, what :class:`FeatureCodec` is built from and what
it was trained for: the model, the cut, the split tensor's shape, λ and the epochs. Nothing
is unpickled: safetensors holds tensors and strings only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from splitbench.compression.models import FeatureCodec
from splitbench.errors import SplitbenchError
from splitbench.weights import save_safetensors

FORMAT = "splitbench-learned-feature-codec/1"


@dataclass(frozen=True)
class CodecRecipe:
    """What rebuilds a trained feature codec, and what it was trained for."""

    model: str
    at: str
    shape: tuple[int, int, int]  # C×H×W of the split tensor it codes
    channels: int
    variant: str
    entropy: str
    lam: float
    epochs: int
    weights_sha256: str | None = None  # the frozen model's weights it was trained against

    def build(self) -> FeatureCodec:
        return FeatureCodec(self.shape[0], self.channels, self.variant, self.entropy)


def export_codec(codec: FeatureCodec, recipe: CodecRecipe, path: Path) -> Path:
    """Write ``codec`` (with its range coder's tables built) and ``recipe`` to ``path``, atomically."""
    return save_safetensors(codec, path, metadata={"format": FORMAT, "recipe": json.dumps(asdict(recipe))})


def load_codec(path: Path) -> tuple[FeatureCodec, CodecRecipe]:
    """The codec in ``path``, ready to compress and decompress, and its recipe; one line if the file is not one."""
    from safetensors import safe_open

    if not path.is_file():
        raise SplitbenchError(f"learned codec file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors' own errors for a damaged or foreign file
        raise SplitbenchError(f"cannot read learned codec {path}: not a safetensors file ({type(error).__name__})") from None
    if metadata.get("format") != FORMAT:
        raise SplitbenchError(f"{path} is not a learned codec that rd exported (no {FORMAT} metadata)")
    try:
        fields = json.loads(metadata["recipe"])
        recipe = CodecRecipe(**{**fields, "shape": tuple(fields["shape"])})
        codec = recipe.build()
    except (KeyError, TypeError, ValueError, SplitbenchError) as error:
        raise SplitbenchError(f"{path} holds a damaged learned-codec recipe: {error}") from None
    load_codec_state(codec, state, path)
    return codec.eval(), recipe


def load_codec_state(codec: FeatureCodec, state: dict[str, torch.Tensor], path: Path | str = "the checkpoint") -> None:
    """Load ``state`` into ``codec``, CDF tables included (they change size once built: the
    buffers are sized from the state first, as new tensors, since tables built by an
    evaluation are inference tensors that cannot be resized)."""
    for name, value in state.items():
        if name.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")):
            owner, _, buffer = name.rpartition(".")
            try:
                module = codec.get_submodule(owner)
            except AttributeError:
                break  # load_state_dict below names the stray key
            current = getattr(module, buffer)
            module.register_buffer(buffer, torch.empty(value.shape, dtype=current.dtype, device=current.device))
    try:
        codec.load_state_dict(state)
    except RuntimeError as error:
        details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        raise SplitbenchError(f"{path} does not fit the codec its recipe builds: "
                              f"{details[0] if details else error}") from None
