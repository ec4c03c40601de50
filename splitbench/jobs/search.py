"""``splitbench plan --search`` as a library call: the deployment to run under an accuracy or latency budget.

>>> from splitbench.jobs.search import SearchJob                     # doctest: +SKIP
>>> SearchJob(model="mobilenet_v2", at=("features.3", "features.6"), codec="bpg:32/38,webp:50/90",
...           bandwidth=(1.0, 10.0), max_drop=(1.0, 5.0)).run()          # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from splitbench import provenance
from splitbench.errors import SplitbenchError
from splitbench.jobs import Shown, check_finite
from splitbench.jobs.link import PlanJob, Result, plan_cuts
from splitbench.link.endpoints import EDGE, INPUT, SplitSetup, model_pictures
from splitbench.link.search import Candidate
from splitbench.link.setups import search_codecs, setup_for
from splitbench.preflight import Plan, writable_folder
from splitbench.transport import is_learned
from splitbench.zoo import ZooModel, load_model

SEARCH_LIMIT = 200  # calibration pictures when --limit is not given


@dataclass(frozen=True)
class SearchJob(PlanJob):
    """``splitbench plan --search``: every candidate deployment measured on calibration pictures,
    the Pareto front of (latency, accuracy drop, bytes) per bandwidth × RTT, and the choice under
    each budget. ``codec`` is a comma list of codec strings, each image codec with its values
    (``bpg:32/38,webp:50/90,learned:RUN@4,none``); ``variant``: further models (exports) to weigh."""

    limit_rule: ClassVar[str] = "spread"  # calibration: every class of a class-sorted set, in proportion
    variant: tuple[str, ...] = ()
    max_drop: tuple[float, ...] | None = None  # accuracy budgets, points below the reference (1 without budgets)
    max_latency: tuple[float, ...] = ()  # latency budgets, ms
    limit: int | None = SEARCH_LIMIT
    cache: Path = field(default=Path("cache"))

    def __post_init__(self) -> None:
        if self.qp is not None or self.quality is not None:
            raise SplitbenchError("--search takes each codec's values in --codec, as bpg:32/38 or webp:50/90; "
                                  "drop --qp/--quality")
        if self.validate_with is not None:
            raise SplitbenchError("--validate compares plan with a link.csv; a search's choices are linked by "
                                  "link --deploy")
        if self.edge_times is not None:
            raise SplitbenchError("--edge-times is plan's; --search times both halves on its calibration pictures")
        if self.max_drop is None:  # as the command line: a latency budget alone is the only budget
            object.__setattr__(self, "max_drop", () if self.max_latency else (1.0,))
        if not self.max_drop and not self.max_latency:
            raise SplitbenchError("--search needs a budget: --max-drop POINTS or --max-latency MS")
        for option, values in (("--max-drop", self.max_drop), ("--max-latency", self.max_latency)):
            for value in values:  # type: ignore[union-attr]
                check_finite(option, value, 0)
        variants = [self.model, *self.variant]
        names = [Path(variant).name for variant in variants]
        if len(set(names)) < len(names):  # a variant's label is its file's name
            repeated = next(name for name in names if names.count(name) > 1)
            raise SplitbenchError(f"--variants: {repeated} is named twice (the model and its variants need distinct "
                                  "names)")
        super().__post_init__()
        writable_folder(Path(self.cache), "--cache")

    def _setups(self, zoo_model: ZooModel) -> list[Candidate]:
        """Every candidate: per model variant, input, each codec setting at each cut it can carry, and edge."""
        codecs = search_codecs(self.codec)
        models = [(self.model, zoo_model)] + [(variant, self._variant(variant)) for variant in self.variant]
        candidates: list[Candidate] = []
        for index, (variant, model) in enumerate(models):
            setups = [SplitSetup(INPUT, "jpeg")]
            for codec in codecs:
                setups += [setup_for(model, cut, codec, None, None, self.layout, self.bits)
                           for cut in self._cuts(model, codec)]
            setups.append(SplitSetup(EDGE))
            unique = {setup.label: setup for setup in setups}  # a codec given twice is one candidate
            candidates += [Candidate(variant, model, setup, primary=index == 0) for setup in unique.values()]
        unused = [c for c in codecs if is_learned(c) and not any(x.setup.codec == c for x in candidates)]
        if unused:
            setup_for(zoo_model, plan_cuts(zoo_model, ("all",), unused[0])[1], unused[0], None, None,
                      self.layout, self.bits)  # says for which model it was trained
        return candidates

    def _cuts(self, model: ZooModel, codec: str) -> list[str]:
        """The cuts ``codec`` is tried at: ``--at``'s (those it can carry), or a learned codec's own
        cut, for the model it was trained for only."""
        if is_learned(codec):
            from splitbench.compression.export import load_codec
            from splitbench.transport import learned_file

            recipe = load_codec(learned_file(codec))[1]
            if recipe.model != model.spec.name:
                return []
            cut = model.cuts().resolve(recipe.at)
            return [cut.name] if tuple(cut.shape) == tuple(recipe.shape) else []  # a pruned variant's may differ
        return plan_cuts(model, self.at, codec)[1:-1]

    def _variant(self, variant: str) -> ZooModel:
        model = load_model(variant, leaf_modules=tuple(self.leaf))
        model.describe_weights("auto", pretrained=True)  # an export's own weights, checked now
        return model

    def plan(self) -> Plan:
        plan = super().plan()
        candidates = self._get("setups")
        plan.add("variants", ", ".join([self.model, *self.variant]))
        plan.add("candidates", str(len(candidates)))
        budgets = [f"drop ≤ {v:g} pt" for v in self.max_drop] + [f"latency ≤ {v:g} ms" for v in self.max_latency]
        plan.add("budgets", ", ".join(budgets))
        return plan.add("calibration", f"{len(self._get('images'))} pictures").add("cache", self.cache)

    def run(self) -> Result:
        import pandas as pd

        from splitbench.link import plan as planning
        from splitbench.link import search
        from splitbench.link.endpoints import Receiver
        from splitbench.link.measure import on_cores, split_cores
        from splitbench.link.report import search_markdown
        from splitbench.link.tasks import answers_for
        from splitbench.points import PointStore
        from splitbench.progress import log, track
        from splitbench.results import result_set, write_csv, write_result

        start = time.perf_counter() - self._get("checks_s")
        candidates, images, out = self._get("setups"), self._get("images"), self._get("out")
        weights = {}
        for candidate in candidates:
            if candidate.variant not in weights:
                candidate.model.load_weights(self.weights if candidate.primary else "auto", pretrained=True)
                weights[candidate.variant] = candidate.model.weights.describe()
        answers = answers_for(candidates[0].model, images, command="plan")
        metric = answers.metrics[0]
        edge_cpus, server_cpus = split_cores()
        store = PointStore.keyed(Path(self.cache) / "plan-search", {
            "data": images.provenance()["content_sha256"], "preprocess": self.preprocess,
            "cpu": provenance.hardware().get("cpu"), "edge_cpus": sorted(edge_cpus),
            "server_cpus": sorted(server_cpus)}, version=search.POINTS_VERSION)
        pictures: dict[str, tuple[list[Any], list[int]]] = {}
        rows = []
        with on_cores(edge_cpus), track("calibrating deployments", len(candidates), unit="candidates") as bar:
            for candidate in candidates:
                if candidate.variant not in pictures:
                    pairs = model_pictures(candidate.model, images, self.preprocess)
                    pictures[candidate.variant] = ([p for p, _ in pairs], [label for _, label in pairs])
                shown, labels = pictures[candidate.variant]
                row, cached = search.calibrated(store, candidate, weights[candidate.variant], lambda: search.calibrate(
                    candidate, shown, labels, answers, self.preprocess, server_cpus))
                if cached:
                    log(f"{candidate.label}: from cache")
                rows.append({"setup": candidate.label, "variant": candidate.variant,
                             "param": candidate.setup.param, **{k: v for k, v in row.items() if k != "setup"}})
                bar.advance()
        costs = search.with_drop(pd.DataFrame(rows), metric)
        link_model = planning.LinkModel(self.edge_slowdown, self._get("head"),
                                        planning.transport_overhead_ms(Receiver(candidates[0].model,
                                                                                candidates[0].setup)))
        predicted = planning.predict(costs, self.bandwidth, self.rtt, link_model)
        predictions = search.fronts(predicted.drop(columns=["best"]).merge(
            costs[["setup", "variant", "codec", "param", metric, "drop", "payload_bytes"]], on="setup"))
        chosen = search.choose(predictions, metric, self.max_drop, self.max_latency)
        meta = provenance.collect(
            "plan",
            self.arguments() | {
                "candidates": [{"variant": c.variant, **c.setup.describe()} for c in candidates],
                "variant_weights": weights, "bandwidths": list(self.bandwidth), "rtts": list(self.rtt),
                "head_start_bytes": self._get("head"), "transport_overhead_ms": link_model.overhead_ms,
                "edge_cpus": sorted(edge_cpus), "server_cpus": sorted(server_cpus), "dataset": self._get("dataset"),
                "metric": metric, "cache_points": str(store.directory), "out": out},
            weights=candidates[0].model.weights.describe(), data=images.provenance(),
            wall_s=time.perf_counter() - start,
        )
        markdown = search_markdown(self.model, chosen, costs, predictions, link_model, metric, len(images))
        with result_set(out):
            written = write_result(out, "search", chosen, meta, markdown, optional=[
                "variant", "at", "codec", "param", metric, "drop", "payload_bytes", "total_ms"])
            written += [write_csv(out / "candidates.csv", costs, optional=["param", *planning.SPREAD_COLUMNS]),
                        write_csv(out / "predictions.csv", predictions, optional=["param"]),
                        search.plot_fronts(out / "search.png", predictions, chosen, metric, self.model)]
        columns = ["bandwidth_mbit", "budget", "limit", "chosen", metric, "total_ms"]
        return Result([Shown(chosen, f"{self.model}: chosen deployment per budget", columns, out / "search.csv")],
                      written)


SEARCH_FILES = ("search.json", "search.csv", "candidates.csv", "predictions.csv")


def read_search(folder: Path) -> dict[str, Any]:
    """A ``plan --search`` result folder: its arguments (from the sidecar) and its tables, or one
    line naming the file that is missing or unreadable."""
    import json

    import pandas as pd

    folder = Path(folder)
    found: dict[str, Any] = {}
    for name in SEARCH_FILES:
        path = folder / name
        try:
            found[name] = json.loads(path.read_text()) if name.endswith(".json") else pd.read_csv(path)
        except FileNotFoundError:
            raise SplitbenchError(f"--deploy {folder}: no {name}; give the folder plan --search wrote") from None
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise SplitbenchError(f"--deploy {path}: unreadable ({type(error).__name__})") from None
    meta = found["search.json"]
    arguments = meta.get("arguments") if isinstance(meta, dict) else None
    needed = ("model", "variant", "weights", "leaf", "layout", "bits", "preprocess", "dataset", "split", "limit",
              "bandwidth", "rtt", "edge_slowdown", "max_drop")
    if not isinstance(arguments, dict) or meta.get("command") != "plan" or any(key not in arguments for key in needed):
        raise SplitbenchError(f"--deploy {folder}: search.json was not written by plan --search")
    return found


def deployment_options(folder: Path, variant: str | None = None) -> dict[str, Any]:
    """``link``'s options that repeat the search's: the model (its first, or ``variant``, one of
    its variants) and weights, its calibration pictures (data set, split, count, preprocessing),
    the layout of its image codecs, its conditions and its edge's slowdown."""
    arguments = read_search(folder)["search.json"]["arguments"]
    variants = [arguments["model"], *arguments["variant"]]
    if variant is not None and variant not in variants:
        raise SplitbenchError(f"--deploy {folder} searched {', '.join(variants)}; not {variant}")
    keys = ("layout", "bits", "preprocess", "dataset", "split", "limit")
    primary = variant in (None, arguments["model"])
    return {key: arguments[key] for key in keys} | {
        "model": arguments["model"] if primary else variant, "weights": arguments["weights"] if primary else "auto",
        "leaf": tuple(arguments["leaf"]), "bandwidth": tuple(arguments["bandwidth"]), "rtt": tuple(arguments["rtt"]),
        "edge_slowdown": arguments["edge_slowdown"]}


def with_deployment(options: dict[str, Any], folder: Path, variant: str | None = None) -> dict[str, Any]:
    """``link``'s ``options`` with the search's settings wherever they are ``LinkJob``'s defaults
    (an option given otherwise stays, and the job then refuses it in one line)."""
    from dataclasses import fields

    from splitbench.jobs.link import LinkJob

    defaults = {field.name: field.default for field in fields(LinkJob)}
    searched = deployment_options(folder, variant)
    chosen = {key: value if options.get(key, defaults[key]) == defaults[key] else options[key]
              for key, value in searched.items()}
    return options | chosen | {"deployments": folder, "with_plan": True}


def check_deployment(job: Any) -> None:
    """A ``LinkJob`` with ``deployments`` links the search's choices on the search's own pictures,
    under its conditions: any of those settings that differs is refused in one line."""
    searched = deployment_options(job.deployments, job.model)
    for key, value in searched.items():
        mine = getattr(job, key)
        if (tuple(mine) if isinstance(mine, (list, tuple)) else mine) != \
                (tuple(value) if isinstance(value, (list, tuple)) else value):
            option = "--" + key.replace("_", "-")
            raise SplitbenchError(f"--deploy {job.deployments} links the search's {option} ({_shown(value)}), "
                                  f"not {_shown(mine)}: leave {option} out")
    if not job.with_plan:
        raise SplitbenchError("--deploy checks plan --search's choices against plan's timing: give --plan too")


def _shown(value: Any) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) \
        if isinstance(value, (list, tuple)) else str(value)


def deployed_setups(zoo_model: ZooModel, variant: str, folder: Path, layout: str, bits: int) -> list[SplitSetup]:
    """The search's chosen deployments of ``variant`` (``zoo_model``), with input and edge beside them."""
    import pandas as pd

    found = read_search(folder)
    arguments = found["search.json"]["arguments"]
    if variant not in [arguments["model"], *arguments["variant"]]:
        raise SplitbenchError(f"--deploy {folder} searched deployments of "
                              f"{', '.join([arguments['model'], *arguments['variant']])}, not of {variant}")
    chosen = found["search.csv"]
    chosen = chosen[chosen["variant"] == variant].dropna(subset=["at"])
    setups = [SplitSetup(INPUT, "jpeg")]
    for pick in chosen.drop_duplicates("chosen").itertuples():
        if pick.at in (INPUT, EDGE):
            continue
        codec = f"{pick.codec}:{int(pick.param)}" if not pd.isna(pick.param) else pick.codec
        setups.append(setup_for(zoo_model, pick.at, codec, None, None, layout, bits))
    return [*setups, SplitSetup(EDGE)]
