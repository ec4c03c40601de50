"""The zoo: every model's chain of stages computes the model, split names resolve as the papers use them."""

from __future__ import annotations

import pytest
import torch

from splitbench.errors import SplitbenchError
from conftest import zoo
from splitbench.zoo import get_spec, list_models


@pytest.mark.parametrize("name", list_models())
def test_chain_of_stages_computes_the_model(name: str) -> None:
    zoo_model = zoo(name)
    size = zoo_model.spec.input_size
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        expected = zoo_model.model(x)
        assert torch.equal(zoo_model.trunk(x), expected)
        # and any cut: head then tail is the whole model
        cut = len(zoo_model.trunk) // 2
        assert torch.equal(zoo_model.trunk.tail(cut)(zoo_model.trunk.head(cut)(x)), expected)


@pytest.mark.parametrize(
    "model, name, path",
    [
        ("vgg16", "conv1_1", "features.1"),
        ("vgg16", "pool4", "features.23"),
        ("vgg16", "conv5_3", "features.29"),
        ("vgg16", "fc8", "classifier.6"),
        ("mobilenet_v2", "conv1", "features.0.2"),
        ("mobilenet_v2", "bottleneck2", "features.2"),
        ("mobilenet_v2", "bottleneck17", "features.17"),
        ("mobilenet_v2", "conv_last", "features.18.2"),
        ("resnet50", "conv2_x", "layer1.2"),
        ("resnet50", "conv5_x", "layer4.2"),
        ("vit", "patch_embed", "to_patch_embedding.3"),
        ("vit", "block6", "transformer.layers.5"),
        ("cifar_resnet56", "layer3", "layer3.8"),
    ],
)
def test_split_point_names(model: str, name: str, path: str) -> None:
    trunk = zoo(model).trunk
    assert trunk.paths[trunk.resolve(name)] == path


def test_module_paths_and_containers_resolve() -> None:
    trunk = zoo("resnet50").trunk
    assert trunk.resolve("layer1") == trunk.resolve("conv2_x")  # a container cuts after its last stage
    assert trunk.resolve("layer2.1") == trunk.paths.index("layer2.1")


def test_unknown_split_lists_valid_names() -> None:
    trunk = zoo("mobilenet_v2").trunk
    with pytest.raises(SplitbenchError, match=r"unknown split point 'bottleneck99'.*bottleneck6"):
        trunk.resolve("bottleneck99")
    with pytest.raises(SplitbenchError, match=r"inside 'features.4'.*skip connection"):
        trunk.resolve("features.4.conv.1")
    with pytest.raises(SplitbenchError, match="unknown split point 'features.4.nothing'"):
        trunk.resolve("features.4.nothing")


def test_unknown_model_lists_valid_models() -> None:
    with pytest.raises(SplitbenchError, match=r"unknown model 'vgg19'; valid models: vgg16, mobilenet_v2"):
        get_spec("vgg19")


def test_vit_is_seed_002_configuration() -> None:
    vit = zoo("vit").model
    assert vit.to_patch_embedding[2].in_features == 4 * 4 * 3  # patch 4
    assert vit.to_patch_embedding[2].out_features == 512  # dim
    assert len(vit.transformer.layers) == 6  # depth
    attention = vit.transformer.layers[0][0]
    assert attention.heads == 8 and attention.to_qkv.out_features == 3 * 512
    assert vit.transformer.layers[0][1].net[1].out_features == 512  # mlp_dim
    assert vit.mlp_head.out_features == 10


def test_ssd_detectors_share_the_classifier_prefix() -> None:
    ssd = zoo("ssd_vgg16")
    vgg = zoo("vgg16")
    assert ssd.trunk.paths[: vgg.trunk.resolve("pool4") + 1] == vgg.trunk.paths[: vgg.trunk.resolve("pool4") + 1]
    out = ssd.model(torch.zeros(1, 3, 224, 224))
    # anchors: 14x14x4 + 14x14x6 + 7x7x6 + 4x4x6 + 2x2x4 + 1x1x4; 4 box offsets + 21 classes
    assert out.shape == (1, 14 * 14 * 4 + 14 * 14 * 6 + 7 * 7 * 6 + 4 * 4 * 6 + 2 * 2 * 4 + 4, 25)
    mobile = zoo("ssd_mobilenet_v2").model(torch.zeros(1, 3, 224, 224))
    assert mobile.shape == (1, 14 * 14 * 4 + 7 * 7 * 6 + 4 * 4 * 6 + 2 * 2 * 6 + 1 * 4 + 1 * 4, 25)
