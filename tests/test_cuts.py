"""Cuts from the traced graph: head∘tail is the model at every cut, MACs add up to fvcore's count."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tv_models

from conftest import REPO, zoo
from splitbench.cuts import CutGraph
from splitbench.errors import SplitbenchError
from splitbench.macs import count_macs
from splitbench.profiling import profile_model
from splitbench.zoo import list_models

# (torchvision name, builder kwargs, input side): eight families, small inputs keep it fast.
ARCHITECTURES = [
    ("resnet18", {}, 64),
    ("mobilenet_v3_small", {}, 64),
    ("efficientnet_b0", {}, 64),
    ("regnet_y_400mf", {}, 64),
    ("convnext_tiny", {}, 64),
    ("densenet121", {}, 64),
    ("googlenet", {"aux_logits": False, "init_weights": True}, 64),
    ("swin_t", {}, 64),
]


def _check_every_cut(model: nn.Module, graph: CutGraph, x: torch.Tensor, cuts: list | None = None) -> None:
    with torch.inference_mode():
        expected = model(x)
        for cut in graph.cuts if cuts is None else cuts:
            head, tail = graph.split(cut)
            features = head(x)
            assert tuple(features.shape[1:]) == cut.shape, cut.name
            torch.testing.assert_close(tail(features), expected, atol=1e-5, rtol=1e-5, msg=cut.name)


@pytest.mark.parametrize("name, kwargs, size", ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES])
def test_torchvision_architectures_split_at_every_cut(name: str, kwargs: dict, size: int) -> None:
    torch.manual_seed(0)
    model = tv_models.get_model(name, weights=None, **kwargs).eval()
    example = torch.zeros(1, 3, size, size)
    graph = CutGraph.trace(model, example)
    assert len(graph.cuts) >= 10
    assert graph.cuts[-1].cum_macs == graph.total_macs == count_macs(model, example).total()
    _check_every_cut(model, graph, torch.randn(2, 3, size, size))


@pytest.mark.parametrize("name", list_models())
def test_zoo_models_split_at_their_paper_names(name: str) -> None:
    zoo_model = zoo(name)
    # Cuts do not depend on the input size; ImageNet classifiers are checked at 64 px to keep
    # the test fast (the SSDs' extra layers need their 224 px).
    size = 64 if zoo_model.spec.input_size == 224 and zoo_model.spec.task == "classification" else None
    graph = zoo_model.cuts(size)
    assert graph.total_macs == count_macs(zoo_model.model, zoo_model.example_input(size)).total()
    paper = {graph.resolve(name) for name in zoo_model.spec.split_points}
    assert {cut.name for cut in paper} == {zoo_model.cuts().resolve(name).name for name in zoo_model.spec.split_points}
    # every cut is checked on eight architectures above; here the papers' cuts and a spread
    cuts = sorted(paper | set(graph.cuts[:: max(1, len(graph.cuts) // 4)]), key=lambda c: c.position)
    _check_every_cut(zoo_model.model, graph, torch.randn(2, *zoo_model.example_input(size).shape[1:]), cuts[::2])


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2", "resnet50", "vit"])
def test_paper_names_keep_the_committed_profiles(name: str) -> None:
    """Every paper split name is a graph-derived cut with the committed counts (seed 003 Fig. 3/4)."""
    committed = pd.read_csv(REPO / "reports" / "profile" / name / "profile.csv")
    graph = zoo(name).cuts()
    for row in committed.itertuples():
        cut = graph.resolve(row.layer)
        assert (cut.elements, cut.cum_macs) == (row.elements, row.cum_macs), row.layer
        assert "x".join(map(str, cut.shape)) == row.output_shape
    paper = profile_model(zoo(name), rows="paper").table
    assert list(paper["layer"]) == list(committed["layer"])


@pytest.mark.parametrize(
    "model, name, cut",
    [
        ("vgg16", "pool4", "features.23"),
        ("vgg16", "conv1_1", "features.1"),
        ("vgg16", "fc8", "classifier"),
        ("mobilenet_v2", "bottleneck6", "features.6"),
        ("mobilenet_v2", "conv_last", "features"),
        ("resnet50", "conv2_x", "layer1"),
        ("resnet50", "layer2.1", "layer2.1"),
        ("resnet50", "conv1", "relu"),
        ("vit", "block6", "add_12"),
        ("cifar_resnet56", "layer3.8", "layer3"),
    ],
)
def test_names_resolve_to_cuts(model: str, name: str, cut: str) -> None:
    assert zoo(model).cuts().resolve(name).name == cut


def test_a_paper_name_that_hides_a_cut_renames_it() -> None:
    graph = zoo("resnet50").cuts()
    assert graph.resolve("conv1").name == "relu"  # He et al.'s conv1 includes BN and ReLU
    assert graph.resolve("conv1.output").kind == "Conv2d"
    assert [c.name for c in graph.cuts[:3]] == ["conv1.output", "bn1", "relu"]


def test_a_cut_where_two_tensors_cross_names_the_second() -> None:
    graph = zoo("resnet50").cuts()
    with pytest.raises(SplitbenchError, match=r"cannot split at 'layer1.0.conv1': 2 values cross there "
                                              r"\(layer1.0.conv1 and maxpool\)"):
        graph.resolve("layer1.0.conv1")
    with pytest.raises(SplitbenchError, match=r"cannot split at 'layer1.1.bn2'.*'layer1.0' or 'layer1.1.add'"):
        graph.resolve("layer1.1.bn2")


def test_unknown_cut_suggests_close_names() -> None:
    with pytest.raises(SplitbenchError, match=r"unknown split point 'botleneck6'; did you mean bottleneck6"):
        zoo("mobilenet_v2").cuts().resolve("botleneck6")


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on a tensor's value: torch.fx cannot trace it
            return self.conv(x)
        return -self.conv(x)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1)
        self.block = _Untraceable()
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.block(self.stem(x))))


def test_untraceable_module_is_named_and_leaf_is_the_way_out() -> None:
    model, x = _Net().eval(), torch.randn(2, 3, 8, 8)
    with pytest.raises(SplitbenchError, match=r"torch.fx broke inside 'block' \(_Untraceable.*--leaf block"):
        CutGraph.trace(model, x[:1])
    graph = CutGraph.trace(model, x[:1], leaf_modules=["block"])
    assert [c.name for c in graph.cuts] == ["stem", "block", "relu", "head"]
    _check_every_cut(model, graph, x)


def test_a_plain_chain_falls_back_to_its_children() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), _Untraceable(), nn.ReLU()).eval()
    graph = CutGraph.trace(model, torch.zeros(1, 3, 8, 8))
    assert [c.name for c in graph.cuts] == ["0", "1", "2"]
    _check_every_cut(model, graph, torch.randn(2, 3, 8, 8))


def test_parameters_of_the_head_and_tail_add_up() -> None:
    graph = zoo("mobilenet_v2").cuts()
    cut = graph.resolve("bottleneck6")
    head, tail = graph.split(cut)
    head_params = sum(p.numel() for p in head.parameters())
    tail_params = sum(p.numel() for p in tail.parameters())
    assert head_params == cut.cum_params and head_params + tail_params == graph.total_params == 3_504_872


def test_the_traceable_vit_computes_vit_pytorchs_function() -> None:
    from vit_pytorch import ViT

    from splitbench.zoo.vit import VIT_CIFAR10_CONFIG, SplittableViT

    torch.manual_seed(0)
    original = ViT(**VIT_CIFAR10_CONFIG).eval()
    traceable = SplittableViT(**VIT_CIFAR10_CONFIG).eval()
    traceable.load_state_dict(original.state_dict(), strict=True)  # the same parameter names
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(traceable(x), original(x), atol=1e-6, rtol=1e-6)


def test_segmentation_and_detection_models_are_cut_in_their_backbone() -> None:
    from splitbench.zoo import load_model

    for name in ("fcn_resnet50", "fasterrcnn_mobilenet_v3_large_fpn"):
        zoo_model = load_model(name)
        assert zoo_model.spec.task in ("segmentation", "detection") and zoo_model.spec.cut_module == "backbone"
        graph = zoo_model.cuts(64)
        assert graph.total_macs == count_macs(zoo_model.traced, zoo_model.example_input(64)).total()
    backbone = load_model("fcn_resnet50").traced  # returns {"out": layer4's output}
    graph = CutGraph.trace(backbone, torch.zeros(1, 3, 64, 64))
    x = torch.randn(1, 3, 64, 64)
    head, tail = graph.split("layer2")
    with torch.inference_mode():
        torch.testing.assert_close(tail(head(x))["out"], backbone(x)["out"])


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224"])
def test_timm_vits_are_cut_after_every_block(name: str) -> None:
    # timm's forward takes optional attn_mask / is_causal arguments; bound to their defaults
    # for tracing, they no longer cross every cut, so each block's output is a cut.
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224)
    graph = CutGraph.trace(model, x)
    with torch.no_grad():
        expected = model(x)
        for block in range(len(model.blocks)):
            head, tail = graph.split(f"blocks.{block}")
            assert graph.resolve(f"blocks.{block}").shape == (197, 192)  # tokens × width
            torch.testing.assert_close(tail(head(x)), expected, rtol=0, atol=0)
