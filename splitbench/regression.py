"""``splitbench report --check``: a small, deterministic slice of every reproduction, against baselines.

Each slice re-measures a few figures of one committed reproduction in seconds to a minute
(profile totals, the shared-head accounting, a 50-image codec sweep, an 8-image detection codec
sweep, pruning the reference
ViT, baseline accuracies, one small learned-compression point) from scratch (fresh caches), and every figure carries its
tolerance: ``exact`` for counts and bytes, which are deterministic; ``abs`` points for
accuracies (BLAS and thread counts may flip an image between machines); ``ratio`` for
timings, compared as now / baseline. Baselines live in ``reports/baselines/regression.csv``.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from splitbench.data import resolve_data_root
from splitbench.errors import SplitbenchError
from splitbench.results import write_csv
from splitbench.zoo.vit import REFERENCE_CHECKPOINT as REFERENCE_VIT

BASELINES = Path("reports") / "baselines" / "regression.csv"
MOBILENET_WEIGHTS = "mobilenet_v2-imagenet-int8dequant.pth"
RESNET20_WEIGHTS = "cifar-resnet20-12fca82f.th"
KINDS = ("exact", "abs", "ratio")


@dataclass(frozen=True)
class Figure:
    """One re-measured figure and how far it may move from its baseline."""

    metric: str
    value: float
    kind: str = "exact"  # exact | abs (points) | ratio (now / baseline, either way)
    tolerance: float = 0.0

    def holds(self, baseline: float) -> bool:
        if self.kind == "exact":
            return self.value == baseline
        if self.kind == "abs":
            return abs(self.value - baseline) <= self.tolerance
        if baseline <= 0 or self.value <= 0:
            return self.value == baseline
        return max(self.value / baseline, baseline / self.value) <= self.tolerance

    def describe_tolerance(self) -> str:
        return {"exact": "exact", "abs": f"±{self.tolerance:g}", "ratio": f"×{self.tolerance:g}"}[self.kind]


@dataclass(frozen=True)
class Drift:
    metric: str
    baseline: float | None
    now: float | None
    tolerance: str

    def line(self) -> str:
        return f"{self.metric}: baseline {_show(self.baseline)}, now {_show(self.now)}, tolerance {self.tolerance}"


def _show(value: float | None) -> str:
    if value is None:
        return "missing"
    return f"{int(value)}" if float(value).is_integer() else f"{value:.4g}"


@dataclass(frozen=True)
class Inputs:
    """Where a slice finds its data and weights; ``scratch`` is a fresh folder for its caches."""

    data_root: Path | None
    weights_dir: Path | None
    reference_vit: Path
    scratch: Path

    def weights(self, name: str) -> Path:
        folder = self.weights_dir or resolve_data_root(self.data_root).parent / "weights"
        path = folder / name
        if not path.is_file():
            raise SplitbenchError(f"missing weights file: {path} (pass --weights-dir)")
        return path


# --- the slices -------------------------------------------------------------------------------


def profile_slice(inputs: Inputs) -> list[Figure]:
    """Per-model totals and the element count at each seed split point (random weights)."""
    from splitbench.profiling import profile_model
    from splitbench.zoo import load_model

    figures = []
    for name, layer in (("vgg16", "pool4"), ("mobilenet_v2", "bottleneck6"), ("resnet50", "conv2_x"), ("vit", None)):
        profile = profile_model(load_model(name))
        figures += [Figure(f"profile.{name}.macs", profile.total_macs), Figure(f"profile.{name}.params", profile.total_params)]
        if layer:
            figures.append(Figure(f"profile.{name}.{layer}.elements", int(profile.row(layer)["elements"])))
    return figures


def split_slice(inputs: Inputs) -> list[Figure]:
    """Seed 003 eq. 1–4 for both seed configurations."""
    from splitbench.split import account_split
    from splitbench.zoo import load_model

    figures = []
    for name, at in (("vgg16", "pool4"), ("mobilenet_v2", "bottleneck6")):
        account = account_split(load_model(name), at, ["classification", "detection"], repeats=0)
        figures += [Figure(f"split.{name}.macs_shared", account.macs_shared),
                    Figure(f"split.{name}.reduction_percent", round(account.reduction_percent, 4))]
    return figures


def eval_slice(inputs: Inputs) -> list[Figure]:
    """MobileNetV2 (shared weights) on the first 100 images of imagenet-val-1300."""
    from splitbench.data import open_dataset
    from splitbench.evaluation import evaluate_topk
    from splitbench.zoo import load_model

    model = load_model("mobilenet_v2", str(inputs.weights(MOBILENET_WEIGHTS)))
    dataset = open_dataset("imagenet-val-1300", root=inputs.data_root, limit=100,
                           transform=model.spec.preprocessing.transform())
    result = evaluate_topk(model.model, dataset, progress=False)
    return [Figure("eval.mobilenet_v2.top1", result.top1, "abs", 1.0), Figure("eval.mobilenet_v2.top5", result.top5, "abs", 1.0)]


def codec_slice(inputs: Inputs) -> list[Figure]:
    """MobileNetV2 at bottleneck6, 50 images: input JPEG bytes, BPG 4:0:0 at QP 30/35/40 and WebP 50."""
    from splitbench.codecs import CodecSpec
    from splitbench.codecs.pipeline import baseline_point, layout_points
    from splitbench.codecs.sweep import SweepRequest, run_sweep
    from splitbench.zoo import load_model

    model = load_model("mobilenet_v2", str(inputs.weights(MOBILENET_WEIGHTS)))
    points = [baseline_point("none"), baseline_point("minmax8")] + layout_points(
        [CodecSpec("bpg", 30), CodecSpec("bpg", 35), CodecSpec("bpg", 40), CodecSpec("webp", 50)], ["gray"])
    request = SweepRequest(model, "bottleneck6", "imagenet-val-1300", data_root=inputs.data_root, limit=50,
                           cache_root=inputs.scratch / "codec", workers=2, progress=False)
    table = run_sweep(request, points).table
    figures = [Figure("codec.jpeg_bytes", int(table["jpeg_bytes"].iloc[0])),
               Figure("codec.none.top1", float(table["top1"].iloc[0]), "abs", 2.0)]
    for _, row in table.iloc[1:].iterrows():
        name = row["codec"] if pd.isna(row["param"]) else f"{row['codec']}{int(row['param'])}"
        figures += [Figure(f"codec.{name}.feature_bytes", int(row["feature_bytes"])),
                    Figure(f"codec.{name}.top1", float(row["top1"]), "abs", 2.0)]
    bpg35 = table[(table["codec"] == "bpg") & (table["param"] == 35)].iloc[0]
    figures.append(Figure("codec.bpg35.encode_ms", round(float(bpg35["encode_ms"]), 1), "ratio", 2.5))
    return figures


def codec_detection_slice(inputs: Inputs) -> list[Figure]:
    """YOLOv4-tiny (the package's weights) at pool2 on the first 8 images of coco-val2017-mini:
    input JPEG bytes, mAP uncompressed, and BPG 4:0:0 at QP 35 and WebP (paper layout) at
    quality 30: bytes and mAP after the codec."""
    from splitbench.codecs import CodecSpec
    from splitbench.codecs.pipeline import baseline_point, layout_points
    from splitbench.codecs.sweep import SweepRequest, run_sweep
    from splitbench.zoo import load_model

    model = load_model("yolov4_tiny", "default")
    points = [baseline_point("none"), *layout_points([CodecSpec("bpg", 35)], ["gray"]),
              *layout_points([CodecSpec("webp", 30)], ["paper"])]
    request = SweepRequest(model, "pool2", "coco-val2017-mini", data_root=inputs.data_root, limit=8,
                           cache_root=inputs.scratch / "codec-detection", workers=2, progress=False)
    table = run_sweep(request, points).table
    figures = [Figure("codec_detection.jpeg_bytes", int(table["jpeg_bytes"].iloc[0]))]
    for _, row in table.iterrows():
        name = row["codec"] if pd.isna(row["param"]) else f"{row['codec']}{int(row['param'])}"
        if row["codec"] != "none":
            figures.append(Figure(f"codec_detection.{name}.feature_bytes", int(row["feature_bytes"])))
        # 8 images: a detection whose score a different BLAS nudges across a rank moves AP a little
        figures += [Figure(f"codec_detection.{name}.map", round(float(row["map"]), 3), "abs", 1.0 if name == "none" else 2.0),
                    Figure(f"codec_detection.{name}.map50", round(float(row["map50"]), 3), "abs", 1.0 if name == "none" else 2.0)]
    return figures


def prune_slice(inputs: Inputs) -> list[Figure]:
    """The reference CIFAR-10 ViT pruned by half (weight and stability, uniform): top-1 on 500 test
    images, the batch-100 speed-up over 200 (median of 3)."""
    from splitbench.pruning.sweep import SweepSettings, load_sweep_data, prune_store, run_sweep
    from splitbench.zoo import load_model

    if not inputs.reference_vit.is_file():
        raise SplitbenchError(f"missing reference checkpoint: {inputs.reference_vit}")
    model = load_model("vit", str(inputs.reference_vit))
    settings = SweepSettings(methods=("weight", "stability"), scopes=("uniform",), ratios=(0.5,), proxy=64,
                             timing_images=200, timing_repeats=3)
    data, _ = load_sweep_data(model.spec, inputs.data_root, settings.proxy, test_limit=500)
    cache = prune_store(inputs.scratch / "prune", "check", settings, len(data.test_labels))
    rows = run_sweep(model.model, data, settings, cache).rows
    original = rows[0]
    figures = [Figure("prune.original.top1", original["top1"], "abs", 1.0)]
    for row in rows[1:]:
        name = f"prune.{row['method']}50"
        figures += [Figure(f"{name}.params", row["params"]), Figure(f"{name}.macs", row["macs"]),
                    Figure(f"{name}.top1", row["top1"], "abs", 1.0),
                    # timings as ratios: the speed-up over the unpruned model, then that against its baseline
                    Figure(f"{name}.speedup_b100", round(original["cpu_ms_1000_b100"] / row["cpu_ms_1000_b100"], 3), "ratio", 1.5)]
    return figures


def group_slice(inputs: Inputs) -> list[Figure]:
    """CIFAR ResNet-20 (shared weights) with FLGC from seeded random assignments, no training, at
    4 groups plain and 8 and 16 with duplication: kept parameters and MACs, duplicated maps, top-1
    on 500 test images after BatchNorm re-estimation, and the grouped-over-masked speed-up on 200
    (median of 3)."""
    from splitbench.grouping.flgc import (
        duplication_counts,
        effective_counts,
        randomize_assignments,
        replace_convolutions,
        to_grouped,
    )
    from splitbench.grouping.sweep import CALIBRATION_IMAGES, calibrate, load_group_data
    from splitbench.metrics import classifier_top1, dataset_ms
    from splitbench.zoo import load_model

    weights = str(inputs.weights(RESNET20_WEIGHTS))
    dense = load_model("cifar_resnet20", weights)
    data, _ = load_group_data(dense.spec, inputs.data_root, train_limit=CALIBRATION_IMAGES, test_limit=500)
    test = data.test_images, data.test_labels
    figures = [Figure("group.dense.top1", round(classifier_top1(dense.model.eval(), *test, batch_size=500), 2), "abs", 1.0)]
    for groups, top in ((4, 0), (8, 3), (16, 3)):
        model = load_model("cifar_resnet20", weights).model
        replace_convolutions(model, groups, top)
        calibrate(randomize_assignments(model, seed=0), dense.spec, data.train[0])
        masked_ms = dataset_ms(model, data.test_images[:200], 100, 3)
        duplicated = sum(duplication_counts(model).values())
        grouped = to_grouped(model)
        params, macs = effective_counts(grouped, data.test_images[:1])
        name = f"group.g{groups}d{top}"
        figures += [Figure(f"{name}.params", params), Figure(f"{name}.macs", macs),
                    Figure(f"{name}.duplicated_maps", duplicated),
                    Figure(f"{name}.top1", round(classifier_top1(grouped, *test, batch_size=500), 2), "abs", 1.0),
                    # ×2: grouped against masked convolution depends on the CPU's kernels (g8d3: 0.98 on
                    # an AVX2 EPYC, 0.63 on an AMX Xeon), more than the pruning speed-ups do
                    Figure(f"{name}.speedup_vs_masked", round(masked_ms / dataset_ms(grouped, data.test_images[:200], 100, 3), 3),
                           "ratio", 2.0)]
    return figures


def rd_slice(inputs: Inputs) -> list[Figure]:
    """Seed 000's cost table (ResNet50 at conv2_x, N = 128: parameters and MACs per variant), and
    one λ of the MobileNetV2 run trained small (256 training images, 2 + 2 epochs, 100 test images):
    actual bpp from the range coder, estimated bpp, top-1 and agreement with the uncompressed model."""
    import torch

    from splitbench.compression.costs import cost_table
    from splitbench.compression.data import prepare
    from splitbench.compression.sweep import RDRequest, run_rd
    from splitbench.compression.train import RDSettings
    from splitbench.zoo import load_model

    figures = []
    for _, row in cost_table(256, 56, 56, 128).iterrows():
        figures += [Figure(f"rd.cost.{row['variant']}.params", int(row["params"])),
                    Figure(f"rd.cost.{row['variant']}.gmacs", float(row["gmacs"]))]
    model = load_model("mobilenet_v2", str(inputs.weights(MOBILENET_WEIGHTS)))
    scratch = inputs.scratch / "rd"
    train = prepare(model, "bottleneck3", "imagenet-sample-1000", root=inputs.data_root, limit=256, cache=scratch,
                    progress=False)
    test = prepare(model, "bottleneck3", "imagenet-val-1300", root=inputs.data_root, limit=100, cache=scratch,
                   progress=False)
    request = RDRequest(model, "bottleneck3", ["none"], [1.0], [0.0], 32, "factorized",
                        RDSettings(epochs=2, warmup_epochs=2), train, test, scratch, torch.device("cpu"), progress=False)
    row = run_rd(request).iloc[0]
    return figures + [Figure("rd.none1.bpp_actual", round(float(row["bpp_actual"]), 4), "ratio", 1.05),
                      Figure("rd.none1.bpp_estimated", round(float(row["bpp_estimated"]), 4), "ratio", 1.05),
                      Figure("rd.none1.top1", round(float(row["top1"]), 2), "abs", 5.0),
                      Figure("rd.none1.agreement", round(float(row["agreement"]), 2), "abs", 5.0)]


SLICES: dict[str, Callable[[Inputs], list[Figure]]] = {
    "profile": profile_slice,
    "split": split_slice,
    "eval": eval_slice,
    "codec": codec_slice,
    "codec_detection": codec_detection_slice,
    "prune": prune_slice,
    "group": group_slice,
    "rd": rd_slice,
}


def parse_slices(names: str | None) -> list[str]:
    if not names:
        return list(SLICES)
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SLICES]
    if unknown or not chosen:
        raise SplitbenchError(f"unknown slice {','.join(unknown) or '(none)'}; valid: {', '.join(SLICES)}")
    return chosen


def measure(names: Iterable[str], data_root: Path | None, weights_dir: Path | None,
            reference_vit: Path = REFERENCE_VIT, on_slice: Callable[[str], None] | None = None) -> list[Figure]:
    """Run the named slices, each with fresh caches in a temporary folder."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="splitbench-check-") as scratch:
        inputs = Inputs(data_root, weights_dir, reference_vit, Path(scratch))
        for name in names:
            if on_slice:
                on_slice(name)
            figures += SLICES[name](inputs)
    return figures


# --- baselines --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    value: float
    kind: str
    tolerance: float

    def admits(self, now: float) -> bool:
        return Figure("", now, self.kind, self.tolerance).holds(self.value)

    def describe_tolerance(self) -> str:
        return Figure("", self.value, self.kind, self.tolerance).describe_tolerance()


def load_baselines(path: Path) -> dict[str, Baseline]:
    """metric → baseline value and tolerance; the file's tolerances are the ones checked."""
    if not path.is_file():
        raise SplitbenchError(f"missing baselines file: {path} (create it with --update)")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SplitbenchError(f"{path} is not a baselines CSV ({type(error).__name__})") from None
    missing = [c for c in ("metric", "value", "kind", "tolerance") if c not in table.columns]
    if missing:
        raise SplitbenchError(f"{path} is not a baselines CSV: no column {missing[0]} "
                              f"(expected metric,value,kind,tolerance)")
    duplicated = table.loc[table["metric"].duplicated(), "metric"].tolist()
    if duplicated:
        raise SplitbenchError(f"{path}: metric listed twice: {duplicated[0]}")
    unknown = sorted(set(table["kind"]) - set(KINDS))
    if unknown:
        raise SplitbenchError(f"{path}: unknown tolerance kind {unknown[0]!r}; valid: {', '.join(KINDS)}")
    values, tolerances = _finite_column(path, table, "value"), _finite_column(path, table, "tolerance")
    return {m: Baseline(v, str(k), tol)
            for m, v, k, tol in zip(table["metric"], values, table["kind"], tolerances, strict=True)}


def _finite_column(path: Path, table: pd.DataFrame, column: str) -> list[float]:
    """``column`` as finite numbers; the first cell that is not one is named by its line."""
    numbers = pd.to_numeric(table[column], errors="coerce")
    bad = [i for i, number in enumerate(numbers) if not math.isfinite(number)]
    if bad:
        line, metric, cell = bad[0] + 2, table["metric"].iloc[bad[0]], table[column].iloc[bad[0]]
        shown = "empty" if pd.isna(cell) else repr(str(cell))
        raise SplitbenchError(f"{path}, line {line}: the {column} of {metric} is {shown}, not a finite number")
    return [float(number) for number in numbers]


def compare(figures: list[Figure], baselines: dict[str, Baseline], slices: Iterable[str]) -> list[Drift]:
    """Every figure outside its baseline's tolerance, every figure without a baseline, and every
    baseline of the slices run that was not measured."""
    drifts = []
    measured = {f.metric for f in figures}
    for figure in figures:
        baseline = baselines.get(figure.metric)
        if baseline is None:
            drifts.append(Drift(figure.metric, None, figure.value, figure.describe_tolerance()))
        elif not baseline.admits(figure.value):
            drifts.append(Drift(figure.metric, baseline.value, figure.value, baseline.describe_tolerance()))
    prefixes = tuple(f"{s}." for s in slices)
    drifts += [Drift(metric, baseline.value, None, baseline.describe_tolerance()) for metric, baseline in baselines.items()
               if metric.startswith(prefixes) and metric not in measured]
    return drifts


def update_baselines(path: Path, figures: list[Figure], slices: Iterable[str]) -> list[str]:
    """Make ``figures`` the baselines of the ``slices`` they come from; other slices' rows stay.

    A metric the slices no longer produce is dropped; a tolerance edited in the file is kept.
    Returns what changed, one line each.
    """
    old = load_baselines(path) if path.is_file() else {}
    prefixes = tuple(f"{s}." for s in slices)
    rows = {m: b for m, b in old.items() if not m.startswith(prefixes)}
    changes = []
    for figure in figures:
        before = old.get(figure.metric)
        kind, tolerance = (before.kind, before.tolerance) if before else (figure.kind, figure.tolerance)
        rows[figure.metric] = Baseline(float(figure.value), kind, tolerance)
        if before is None:
            changes.append(f"{figure.metric}: new, {_show(figure.value)}")
        elif before.value != figure.value:
            changes.append(f"{figure.metric}: {_show(before.value)} -> {_show(figure.value)}")
    measured = {f.metric for f in figures}
    changes += [f"{m}: dropped (no longer measured)" for m in old if m.startswith(prefixes) and m not in measured]
    table = pd.DataFrame([{"metric": m, "value": b.value, "kind": b.kind, "tolerance": b.tolerance} for m, b in sorted(rows.items())])
    write_csv(path, table)
    return changes
