"""The stable Python API: one function per question, each returning the table its command writes.

>>> from splitbench import api
>>> api.profile("resnet18")                                            # doctest: +SKIP
>>> api.codec_sweep("resnet18", cuts=["layer2", "layer3"], codecs=["none", "webp:50"], limit=8)   # doctest: +SKIP
>>> api.link("cifar_resnet20", cuts=["layer3"], codec="minmax8")       # doctest: +SKIP
>>> api.plan("mobilenet_v2", bandwidth=[1, 10])                        # doctest: +SKIP

Each call builds the command's job (:mod:`splitbench.jobs`), so it makes the command's checks
(a bad option is a :class:`~splitbench.errors.SplitbenchError` with the command line's text),
writes the same result set (to ``out``, or a run folder under ``runs/``) and returns its main
table as a DataFrame. Safe at a script's top level and in notebooks: sweep workers never run
the caller's script again. Options beyond the named ones are the job's fields
(``CodecJob``, ``LinkJob``, ``PlanJob``), by the same names as the command's options.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["codec_sweep", "link", "plan", "profile"]


def profile(model: str, *, input_size: int | None = None, weights: str = "none",
            leaf: Sequence[str] = ()) -> pd.DataFrame:
    """Every valid cut of ``model``: output shape, elements, MACs and parameters (``profile.csv``'s rows)."""
    from splitbench.profiling import profile_model
    from splitbench.zoo import load_model

    return profile_model(load_model(model, weights, leaf_modules=tuple(leaf)), input_size).table


def codec_sweep(model: str, cuts: str | Sequence[str] | None = None, codecs: Sequence[str] = ("none", "minmax8", "bpg"),
                *, weights: str = "auto", dataset: str | None = None, data: str | Path | None = None,
                limit: int | None = None, out: str | Path | None = None, **options: Any) -> pd.DataFrame:
    """Features at each cut (``"all"``: every C×H×W cut smaller than the input) through each codec
    setting (``"webp:30/70"``, ``"bpg"`` with ``qp=(35,)``): ``codec.csv``'s rows, one per cut × setting."""
    from splitbench.jobs.codec import CodecJob

    at = (cuts,) if isinstance(cuts, str) else tuple(cuts) if cuts is not None else None
    job = CodecJob(model=model, at=at, codec=tuple(codecs), weights=weights, dataset=dataset, data=data, limit=limit,
                   out=out, **_tuples(options))
    return job.run().table


def link(model: str, cuts: Sequence[str] = ("input", "edge"), codec: str = "minmax8", *,
         bandwidth: Iterable[float | None] = (None,), rtt: Iterable[float] = (0.0,), shaper: str | None = None,
         weights: str = "auto", limit: int | None = 20, out: str | Path | None = None, **options: Any) -> pd.DataFrame:
    """The model split over a real socket (a ``serve`` process per cut): ``link.csv``'s rows.

    ``bandwidth=(None,)`` (the default) runs the loopback as it is; Mbit/s values shape it (as root
    in a network namespace, else in the client)."""
    from splitbench.jobs.link import LinkJob

    bandwidths = tuple(bandwidth)
    chosen = shaper or ("none" if bandwidths == (None,) else "auto")
    job = LinkJob(model=model, at=tuple(cuts), codec=codec, bandwidth=bandwidths, rtt=tuple(rtt), shaper=chosen,
                  weights=weights, limit=limit, out=out, **_tuples(options))
    return job.run().tables[0].table


def plan(model: str, cuts: Sequence[str] = ("all",), codec: str = "minmax8", *, bandwidth: Iterable[float] = (1.0, 10.0, 100.0),
         rtt: Iterable[float] = (0.0,), weights: str = "auto", out: str | Path | None = None,
         **options: Any) -> pd.DataFrame:
    """Predicted end-to-end latency at every cut, and the best cut per bandwidth (``plan.csv``'s rows)."""
    from splitbench.jobs.link import PlanJob

    job = PlanJob(model=model, at=tuple(cuts), codec=codec, bandwidth=tuple(bandwidth), rtt=tuple(rtt), weights=weights,
                  out=out, **_tuples(options))
    return job.run().tables[0].table


def _tuples(options: dict[str, Any]) -> dict[str, Any]:
    """List options as the (frozen, hashable) jobs hold them: a list or other sequence becomes a tuple."""
    return {name: tuple(value) if isinstance(value, (list, range)) else value for name, value in options.items()}
