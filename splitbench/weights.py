"""Loading model weights: ``none``, the published ``default``, a local file, or ``auto``.

``auto`` (every command's default) is resolved by :meth:`splitbench.zoo.ZooModel.resolve_weights`
into ``default`` or ``none`` before anything is loaded; the result records what it became
(``WeightsInfo.source``) beside what was asked (``requested``).

Files are read with ``torch.load(weights_only=True)`` (or safetensors), so a checkpoint
can never run code on the reader's machine. Keys must match the model exactly; a file
made for another model is refused with a one-line summary of what does not fit, and so are
weights holding NaN or ±Inf (every output they touch would be NaN, and a codec compresses NaN
features to almost nothing, which reads as a perfect codec).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models as tv_models

from splitbench.checks import reachable
from splitbench.errors import SplitbenchError
from splitbench.finite import describe, non_finite_tensors
from splitbench.results import atomic_open

# Containers that training scripts commonly wrap a state_dict in.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
# Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# --weights auto: published weights already on this machine where the figures depend on them, else random.
AUTO = "auto"


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from, for the provenance of every result."""

    source: str  # "none", "default" or the file path: what was loaded (``auto`` resolved)
    sha256: str | None = None
    name: str | None = None  # torchvision's weights enum member for "default"
    requested: str | None = None  # "auto" where --weights auto chose ``source``

    def describe(self) -> dict[str, str | None]:
        described = {"source": self.source, "sha256": self.sha256, "name": self.name}
        if self.requested is not None and self.requested != self.source:
            described["requested"] = self.requested
        return described


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_weights(model: nn.Module, model_name: str, weights: str, torchvision_name: str | None,
                 default_loader: Callable[[nn.Module], str | WeightsInfo] | None = None) -> WeightsInfo:
    """Load ``weights`` (``none``, ``default`` or a path) into ``model`` in place.

    ``default`` means torchvision's weights for ``torchvision_name``, or else what
    ``default_loader`` (a source's own published weights, e.g. timm's, or a package's files)
    loads; it returns their name, or a ``WeightsInfo`` where it knows their sha256.
    """
    if weights == "none":
        return WeightsInfo("none")
    if weights == "default":
        if torchvision_name is None and default_loader is not None:
            loaded = default_loader(model)  # a source's own loader fills the model directly
            info = loaded if isinstance(loaded, WeightsInfo) else WeightsInfo("default", None, loaded)
            check_finite(model.state_dict(), f"{model_name}'s default weights ({info.name}) are not finite")
            return info
        return _load_torchvision_default(model, model_name, torchvision_name)
    path = Path(weights).expanduser()
    refuse_exports(path)
    state = read_state_dict(path)
    apply_state_dict(model, state, model_name, str(path))
    return WeightsInfo(str(path), sha256_of(path))


def save_safetensors(
    model: nn.Module, path: Path, *, dtype: torch.dtype | None = None, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``model``'s state_dict as safetensors (optionally cast, e.g. to fp16), atomically.

    Only floating-point tensors are cast; ``metadata`` (strings only, as the format wants)
    travels inside the file, so a checkpoint carries its own recipe and measured accuracy.
    Non-finite weights are refused, also those that only the cast makes infinite.
    """
    from safetensors.torch import save

    state = {
        key: (value.to(dtype) if dtype is not None and value.is_floating_point() else value).detach().cpu().contiguous()
        for key, value in model.state_dict().items()
    }
    cast = f" after the cast to {str(dtype).removeprefix('torch.')}" if dtype is not None else ""
    check_finite(state, f"not exporting {path}, its weights are not finite", cast)
    _write_atomically(path, save(state, metadata=dict(metadata or {})), "weights")
    return path


def write_tensor_file(path: Path, payload: Any, what: str = "checkpoint") -> Path:
    """``torch.save`` to ``path`` atomically: the one way this project writes a torch file.

    Serialised in memory first, so that a full disk fails in the plain write below (as
    ``OSError``) rather than somewhere inside torch's zip writer.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    _write_atomically(path, buffer.getbuffer(), what)
    return path


def _write_atomically(path: Path, payload: bytes | memoryview, what: str) -> None:
    """A temporary sibling, flushed to disk, then renamed over ``path``: a stop or a full disk
    at any moment leaves the previous file whole (``atomic_open`` removes the temporary one and
    reports a full disk itself); any other failing write ends in one line naming ``path``."""
    try:
        with atomic_open(path, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must not reach the disk before the bytes
    except OSError as error:
        raise SplitbenchError(f"cannot write {what} {path}: {error.strerror or error}; "
                              f"the previous file there, if any, is kept") from None


def check_finite(state: Mapping[str, torch.Tensor], problem: str, detail: str = "") -> None:
    """Refuse a state_dict holding NaN or ±Inf: ``problem``, then how many there are and where."""
    counts = non_finite_tensors(state)
    if counts:
        raise SplitbenchError(f"{problem}: {describe(counts, len(state))}{detail}")


def read_tensor_file(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: the one way this project reads a torch file.

    A damaged, tampered or foreign file fails in one line naming it. torch's own message is
    not passed on: it advises ``weights_only=False``, which would run whatever the file holds.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle warnings are not the user's concern
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SplitbenchError(f"{what} not found: {path}") from None
    except Exception as error:  # UnpicklingError, KeyError, EOFError, RuntimeError, …
        raise SplitbenchError(
            f"cannot read {what} from {path}: not a plain tensor checkpoint ({type(error).__name__}); "
            f"replace or delete it"
        ) from None


def check_weights_file(path: Path) -> str:
    """The format of a local weights file, read from its first bytes; refuses anything else.

    ``--dry-run`` and the preflight checks call this instead of loading the file: a text file,
    an empty file or a truncated header fails in one line before any work, at the cost of
    reading a few bytes.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if not head:
                raise SplitbenchError(f"weights file is empty (0 bytes): {path}")
            if head.startswith(b"PK\x03\x04"):
                return "torch zip checkpoint"
            if head[:1] == b"\x80" and 2 <= head[1] <= 5:
                return "torch legacy checkpoint"
            if len(head) == 8:
                header_size = int.from_bytes(head, "little")
                if 2 <= header_size <= min(100_000_000, path.stat().st_size - 8) and handle.read(1) == b"{":
                    return "safetensors"
    except OSError as error:
        raise SplitbenchError(f"weights file cannot be read: {path} ({error.strerror or error})") from None
    raise SplitbenchError(f"not a weights file (neither a torch checkpoint nor safetensors): {path}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from common containers and prefixes."""
    if not path.is_file():
        raise SplitbenchError(f"weights file not found: {path}")
    if path.suffix != ".safetensors":
        return _unwrap(read_tensor_file(path, "weights"), path)
    from safetensors.torch import load_file

    try:
        raw: object = load_file(str(path))
    except Exception as error:  # SafetensorError and OSError: a damaged or foreign file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SplitbenchError(f"cannot read weights from {path}: not a safetensors file ({first_line})") from None
    return _unwrap(raw, path)


# Files that splitbench writes with a structure of their own in the safetensors metadata: not a
# model's weights, whatever their tensors' names (key: the metadata entry, value: what to do).
_EXPORTS = {
    "pruned_channels": "a pruned model that prune --save-models wrote: its layers are smaller than the model's; "
                       "give the file as the model (splitbench COMMAND FILE.safetensors), its weights come with it",
    "format": "a learned feature codec that rd exported: pass it as --codec learned:FILE",
}


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file, read without its tensors; one line if it is not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:  # safetensors' own errors for a damaged or foreign file
        raise SplitbenchError(f"cannot read {path}: not a safetensors file ({type(error).__name__})") from None


def refuse_exports(path: Path) -> None:
    """One line for a safetensors file that is one of splitbench's exports rather than a model's weights
    (it would fail later with a shape mismatch per pruned layer, or load a codec as a model)."""
    if path.suffix != ".safetensors" or not path.is_file():
        return
    try:
        metadata = safetensors_metadata(path)
    except SplitbenchError:  # a damaged file: read_state_dict names the problem
        return
    for key, what in _EXPORTS.items():
        if key in metadata and (key != "format" or metadata[key].startswith("splitbench-learned-feature-codec")):
            raise SplitbenchError(f"--weights {path} is {what}")


def _unwrap(raw: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(raw, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise SplitbenchError(f"cannot read weights from {path}: no state_dict of tensors in it")
    state = {}
    for key, value in raw.items():
        for prefix in _WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        state[key] = value
    return state


def apply_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], model_name: str, origin: str) -> None:
    """Strict load (torch's rules) with a one-line explanation of any mismatch; non-finite weights are refused.

    Every weight load passes through here (a file, torchvision's defaults, a pruned ViT), so
    this is where NaN and ±Inf are caught, before the model is touched.
    """
    check_finite(state, f"weights in {origin} are not finite", "; replace the file")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise SplitbenchError(f"weights in {origin} do not fit {model_name}: {_mismatch(model, state)}") from None


def _mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    # BatchNorm fills a missing num_batches_tracked itself (checkpoints from before torch 0.4.1).
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{len(items)} {label} (e.g. {items[0]})"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    return "; ".join(problems) or "load_state_dict refused them"


def torchvision_cache(torchvision_name: str) -> tuple[Any, Path]:
    """torchvision's default weights for an architecture (the enum member), and the file
    torch.hub keeps them in once downloaded (which need not exist)."""
    enum = tv_models.get_model_weights(torchvision_name).DEFAULT
    return enum, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)


def describe_weights(weights: str, torchvision_name: str | None, has_default: bool) -> str:
    """What ``--weights`` will load, checked without downloading anything.

    ``default`` weights that are not cached must be downloadable: where their host cannot
    be reached, this fails now rather than after the other checks' work.
    """
    if weights == "none":
        return "random (seeded)"
    if weights != "default":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise SplitbenchError(f"weights file not found: {path}")
        kind = check_weights_file(path)
        refuse_exports(path)
        return f"{path} ({kind}, {path.stat().st_size / 1e6:.1f} MB)"
    if torchvision_name is None:
        if has_default:
            return "the source's published weights (downloaded when needed)"
        raise SplitbenchError("--weights default: no published weights for this model; pass --weights PATH or none")
    enum, cached = torchvision_cache(torchvision_name)
    if cached.is_file():
        return f"torchvision's {enum} (cached at {cached})"
    host = urlparse(enum.url).hostname or ""
    if not urllib.request.getproxies() and not reachable(host):  # behind a proxy, let torch.hub try
        raise SplitbenchError(
            f"torchvision's {enum} is not cached ({cached}) and {host} cannot be reached; "
            f"pass --weights PATH to a local copy"
        )
    size = enum.meta.get("_file_size")
    return f"torchvision's {enum} (downloads{f' {size:.0f} MB' if size else ''} to {cached})"


def _load_torchvision_default(model: nn.Module, model_name: str, torchvision_name: str | None) -> WeightsInfo:
    if torchvision_name is None:
        raise SplitbenchError(
            f"torchvision publishes no weights for {model_name}; pass --weights PATH "
            f"to a state_dict (or --weights none for random weights)"
        )
    enum, cached = torchvision_cache(torchvision_name)
    chatter = io.StringIO()  # torch.hub announces the download on stderr before it fails offline
    try:
        with contextlib.redirect_stderr(chatter):
            state = enum.get_state_dict(progress=False, check_hash=True)
        sys.stderr.write(chatter.getvalue())
    except Exception as error:  # URLError, socket errors, hash mismatch: all mean "not here"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SplitbenchError(
            f"cannot get torchvision's default weights for {model_name} ({enum}): {reason}; "
            f"without a network, pass --weights PATH to a local copy, or --weights none for random weights"
        ) from None
    apply_state_dict(model, state, model_name, str(enum))
    return WeightsInfo("default", sha256_of(cached) if cached.is_file() else None, str(enum))
