"""The stable Python API: one function per question, each returning the table its command writes.

>>> from splitbench import api
>>> api.profile("resnet18")                                            # doctest: +SKIP
>>> api.codec_sweep("resnet18", cuts=["layer2", "layer3"], codecs=["none", "webp:50"], limit=8)   # doctest: +SKIP
>>> api.link("cifar_resnet20", cuts=["layer3"], codec="minmax8")       # doctest: +SKIP
>>> api.plan("mobilenet_v2", bandwidth=[1, 10])                        # doctest: +SKIP
>>> api.search("mobilenet_v2", cuts=["bottleneck3"], codecs=["bpg:32/38", "minmax8"], max_drop=[1, 5])  # doctest: +SKIP

Each call but :func:`profile` builds the command's job (:mod:`splitbench.jobs`), so it makes the
command's checks (a bad option is a :class:`~splitbench.errors.SplitbenchError` with the command
line's text), writes the same result set (to ``out``, or a run folder under ``runs/``) and
returns its main table as a DataFrame; :func:`profile` returns the table only. A list argument
may be one value (``cuts="layer3"``, ``layout="gray"``). Safe at a script's top level and in notebooks: sweep workers never run
the caller's script again. Options beyond the named ones are the job's fields
(``CodecJob``, ``LinkJob``, ``PlanJob``, ``SearchJob``), by the same names as the command's options.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["codec_sweep", "link", "plan", "profile"]


def profile(model: str, *, input_size: int | None = None, weights: str = "none",
            leaf: Sequence[str] = ()) -> pd.DataFrame:
    """Every valid cut of ``model``: output shape, elements, MACs and parameters (the rows of the
    command's ``profile.csv``; nothing is written)."""
    from splitbench.profiling import profile_model
    from splitbench.zoo import load_model

    return profile_model(load_model(model, weights, leaf_modules=_listed(leaf)), input_size).table


def codec_sweep(model: str, cuts: str | Sequence[str] | None = None, codecs: Sequence[str] = ("none", "minmax8", "bpg"),
                *, weights: str = "auto", dataset: str | None = None, data: str | Path | None = None,
                limit: int | None = None, out: str | Path | None = None, **options: Any) -> pd.DataFrame:
    """Features at each cut (``"all"``: every C×H×W cut smaller than the input) through each codec
    setting (``"webp:30/70"``, ``"bpg"`` with ``qp=(35,)``): ``codec.csv``'s rows, one per cut × setting."""
    from splitbench.jobs.codec import CodecJob

    job = CodecJob(model=model, at=_listed(cuts) if cuts is not None else None, codec=_listed(codecs), weights=weights,
                   dataset=dataset, data=data, limit=limit, out=out, **_options(CodecJob, options))
    return job.run().table


def link(model: str, cuts: Sequence[str] = ("input", "edge"), codec: str = "minmax8", *,
         bandwidth: Iterable[float | None] = (None,), rtt: Iterable[float] = (0.0,), shaper: str | None = None,
         weights: str = "auto", limit: int | None = 20, out: str | Path | None = None, **options: Any) -> pd.DataFrame:
    """The model split over a real socket (a ``serve`` process per cut): ``link.csv``'s rows.

    ``bandwidth=(None,)`` (the default) runs the loopback as it is; Mbit/s values shape it (as root
    in a network namespace, else in the client)."""
    from splitbench.jobs.link import LinkJob

    bandwidths = _listed(bandwidth)
    chosen = shaper or ("none" if bandwidths == (None,) else "auto")
    job = LinkJob(model=model, at=_listed(cuts), codec=codec, bandwidth=bandwidths, rtt=_listed(rtt), shaper=chosen,
                  weights=weights, limit=limit, out=out, **_options(LinkJob, options))
    return job.run().tables[0].table


def plan(model: str, cuts: Sequence[str] = ("all",), codec: str = "minmax8", *, bandwidth: Iterable[float] = (1.0, 10.0, 100.0),
         rtt: Iterable[float] = (0.0,), weights: str = "auto", out: str | Path | None = None,
         **options: Any) -> pd.DataFrame:
    """The best cut per bandwidth from predicted end-to-end latencies (``plan.csv``'s rows; every
    cut's prediction is in ``predictions.csv`` beside it)."""
    from splitbench.jobs.link import PlanJob

    job = PlanJob(model=model, at=_listed(cuts), codec=codec, bandwidth=_listed(bandwidth), rtt=_listed(rtt),
                  weights=weights, out=out, **_options(PlanJob, options))
    return job.run().tables[0].table


def search(model: str, cuts: Sequence[str], codecs: Sequence[str], *, max_drop: Iterable[float] = (1.0,),
           max_latency: Iterable[float] = (), bandwidth: Iterable[float] = (1.0, 10.0, 100.0),
           rtt: Iterable[float] = (0.0,), weights: str = "auto", out: str | Path | None = None,
           **options: Any) -> pd.DataFrame:
    """The deployment to run under each budget per bandwidth and RTT (``search.csv``'s rows;
    ``candidates.csv`` and ``predictions.csv`` beside it hold every candidate and the front).
    ``codecs``: codec strings, an image codec with its values (``"bpg:32/38"``)."""
    from splitbench.jobs.search import SearchJob

    job = SearchJob(model=model, at=_listed(cuts), codec=",".join(_listed(codecs)), max_drop=_listed(max_drop),
                    max_latency=_listed(max_latency), bandwidth=_listed(bandwidth), rtt=_listed(rtt),
                    weights=weights, out=out, **_options(SearchJob, options))
    return job.run().tables[0].table


def _listed(value: Any) -> tuple[Any, ...]:
    """A list argument as the (frozen, hashable) jobs hold it: one value (a string, a number) is a list of one."""
    if value is None or isinstance(value, (str, bytes, int, float, Path)):
        return (value,)
    return tuple(value)


def _options(job: type, options: dict[str, Any]) -> dict[str, Any]:
    """Further keyword arguments as ``job``'s fields: an unknown name fails in one line, and a
    field that holds a list takes one value too."""
    from dataclasses import fields

    from splitbench.errors import unknown_name

    types = {field.name: str(field.type) for field in fields(job)}
    for name in options:
        if name not in types:
            raise unknown_name("option", name, sorted(types))
    return {name: _listed(value) if types[name].startswith("tuple") else value for name, value in options.items()}
