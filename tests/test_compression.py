"""Learned compression (seeds 000 and 001): models, entropy coding, losses, BD-rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from splitbench.compression.bd import bd_pair, bd_table, monotone_curve
from splitbench.compression.cbam import CBAM, cbam_parameters
from splitbench.compression.image_codec import AuxiliaryBranch, ImageCodec, latent_bits
from splitbench.compression.models import VARIANTS, FeatureCodec, expected_parameters
from splitbench.compression.pipeline import FeaturePipeline, ImagePipeline, bits, rd_loss, update_entropy_tables
from splitbench.compression.train import RDSettings, TrainingSet, evaluate, rd_objective, train
from splitbench.zoo import count_parameters, load_model


def test_cbam_gates_lie_in_zero_one_and_keep_the_shape() -> None:
    torch.manual_seed(0)
    cbam = CBAM(32)
    x = torch.randn(2, 32, 14, 14) * 5
    channel = cbam.channel.weights(x)
    spatial = cbam.spatial.weights(cbam.channel(x))
    assert channel.shape == (2, 32, 1, 1) and spatial.shape == (2, 1, 14, 14)
    for gate in (channel, spatial):
        assert gate.min() > 0 and gate.max() < 1
    assert cbam(x).shape == x.shape
    assert count_parameters([cbam]) == cbam_parameters(32) == 2 * 32 * 2 + 2 + 32 + 98


@pytest.mark.parametrize("entropy", ["factorized", "hyperprior"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("in_channels,channels", [(24, 32), (256, 128)])
def test_parameter_count_equals_the_formula(variant: str, entropy: str, in_channels: int, channels: int) -> None:
    codec = FeatureCodec(in_channels, channels, variant, entropy)
    assert count_parameters([codec]) == expected_parameters(variant, in_channels, channels, entropy)


def test_attention1_differs_from_none_only_by_the_cbam_parameters() -> None:
    plain = FeatureCodec(24, 32, "none").state_dict()
    attended = FeatureCodec(24, 32, "attention1").state_dict()
    extra = {k: v for k, v in attended.items() if k not in plain}
    # CBAM sits right after the encoder's second convolution (encoder[2]), as encoder[3].
    assert extra and all(k.startswith("encoder.3.") for k in extra)
    assert sum(v.numel() for k, v in extra.items() if "quantized_cdf" not in k) == cbam_parameters(32)
    assert {k: v.shape for k, v in attended.items() if k not in extra} == {k: v.shape for k, v in plain.items()}


@pytest.mark.parametrize("entropy", ["factorized", "hyperprior"])
def test_entropy_coded_round_trip_reproduces_the_rounded_latent(entropy: str) -> None:
    torch.manual_seed(0)
    codec = FeatureCodec(24, 16, "attention2", entropy).eval()
    update_entropy_tables(codec)
    x = torch.randn(3, 24, 28, 28)
    with torch.inference_mode():
        y = codec.encoder(x)
        rounded = codec(x)["y_hat"]
        coded = codec.compress(x)
        decoded = codec.decompress(coded["strings"], coded["shape"])
    medians = codec.entropy.entropy_bottleneck._get_medians() if entropy == "factorized" else 0.0
    assert torch.equal(rounded, torch.round(y - medians) + medians)  # rounding at test time
    assert torch.equal(decoded["y_hat"], rounded)  # the bitstream reproduces it exactly
    assert len(coded["strings"][0]) == 3  # one string per image


def _smooth_features(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, 8, 32, 32, generator=generator)
    return nn.functional.avg_pool2d(noise, 5, stride=1, padding=2) * 3


def _tiny_feature_pipeline() -> FeaturePipeline:
    torch.manual_seed(0)
    tail = nn.Sequential(nn.Conv2d(8, 10, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return FeaturePipeline(FeatureCodec(8, 16, "none"), tail, image_pixels=64 * 64)


def test_actual_bits_are_within_five_percent_of_the_estimate_on_a_trained_model(tmp_path) -> None:
    pipeline = _tiny_feature_pipeline()
    features = _smooth_features(64, 0)
    with torch.no_grad():
        teacher = pipeline.tail(features)
    data = TrainingSet(features, teacher, teacher.argmax(1))
    settings = RDSettings(epochs=6, warmup_epochs=0, batch_size=8, lr=3e-3, aux_lr=3e-2)
    history = train(pipeline, data, rd_objective(1.0, 0.0, "distill"), 6, settings, tmp_path, torch.device("cpu"),
                    description="test", progress=False)
    assert history[-1]["bpp"] < history[0]["bpp"]  # the rate term trained the model
    result = evaluate(pipeline, TrainingSet(*[t[:16] for t in (features, teacher, data.labels)]), 8,
                      torch.device("cpu"), progress=False)
    assert result["bpp_actual"] == pytest.approx(result["bpp_estimated"], rel=0.05)
    assert result["test_images"] == 16 and 0 <= result["agreement"] <= 100


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path) -> None:
    features = _smooth_features(16, 1)
    settings = RDSettings(epochs=2, warmup_epochs=0, batch_size=8)

    def run(folder, epochs_now):
        pipeline = _tiny_feature_pipeline()
        data = TrainingSet(features, pipeline.tail(features).detach(), torch.zeros(16, dtype=torch.long))
        objective = rd_objective(1.0, 0.0, "distill")
        if epochs_now == 1:  # stop after the first epoch, as an interruption would
            train(pipeline, data, objective, 2, settings, folder, torch.device("cpu"), description="", progress=False)
        pipeline = _tiny_feature_pipeline()
        history = train(pipeline, data, objective, 2, settings, folder, torch.device("cpu"), description="",
                        progress=False)
        return pipeline.codec.state_dict(), history

    straight, history = run(tmp_path / "a", 2)
    assert len(history) == 2
    # Resuming a finished run loads its weights and trains nothing more.
    again, _ = run(tmp_path / "a", 1)
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_a_longer_budget_continues_a_shorter_one_and_a_shorter_one_reads_its_weights_back(tmp_path) -> None:
    features = _smooth_features(16, 1)
    settings = RDSettings(epochs=2, warmup_epochs=0, batch_size=8)

    def trained(folder, epochs):
        torch.manual_seed(0)  # as build_pipeline seeds each point
        pipeline = _tiny_feature_pipeline()
        data = TrainingSet(features, pipeline.tail(features).detach(), torch.zeros(16, dtype=torch.long))
        history = train(pipeline, data, rd_objective(1.0, 0.0, "distill"), epochs, settings, folder,
                        torch.device("cpu"), description="", progress=False)
        return pipeline.codec.state_dict(), history

    one, _ = trained(tmp_path / "short", 1)
    two, history = trained(tmp_path / "short", 2)  # continues the 1-epoch run
    assert len(history) == 2 and any(not torch.equal(one[k], two[k]) for k in one)
    straight, _ = trained(tmp_path / "long", 2)
    assert all(torch.equal(two[k], straight[k]) for k in two)
    again, history = trained(tmp_path / "long", 1)  # the 2-epoch run's weights after its first epoch
    assert len(history) == 1 and all(torch.equal(one[k], again[k]) for k in one)

    # As a sweep does it: one pipeline evaluated after the first budget (entropy tables built in
    # inference mode), then trained on to the second.
    torch.manual_seed(0)
    pipeline = _tiny_feature_pipeline()
    data = TrainingSet(features, pipeline.tail(features).detach(), torch.zeros(16, dtype=torch.long))
    objective = rd_objective(1.0, 0.0, "distill")
    for epochs in (1, 2):
        train(pipeline, data, objective, epochs, settings, tmp_path / "swept", torch.device("cpu"), description="",
              progress=False)
        evaluate(pipeline, data, 8, torch.device("cpu"), progress=False)
    swept = pipeline.codec.state_dict()
    assert all(torch.equal(swept[k], straight[k]) for k in straight if "quantiles" in k or "weight" in k)


def test_rd_loss_is_lambda_times_task_plus_bpp() -> None:
    pipeline = _tiny_feature_pipeline()
    features = _smooth_features(4, 2)
    output = pipeline(features)
    teacher = torch.randn(4, 10)
    loss, parts = rd_loss(output, teacher, teacher.argmax(1), 2.5, 0.0, "distill", 64 * 64)
    expected_bpp = bits(output.likelihoods).item() / (4 * 64 * 64)
    assert parts["bpp"] == pytest.approx(expected_bpp, rel=1e-5)
    assert loss.item() == pytest.approx(2.5 * parts["task"] + parts["bpp"], rel=1e-5)
    labels_loss, _ = rd_loss(output, teacher, teacher.argmax(1), 1.0, 0.0, "labels", 64 * 64)
    assert labels_loss.item() == pytest.approx(
        nn.functional.cross_entropy(output.logits, teacher.argmax(1)).item() + expected_bpp, rel=1e-5)


def _tiny_image_pipeline(aux: bool) -> ImagePipeline:
    torch.manual_seed(0)
    recogniser = nn.Sequential(nn.Conv2d(3, 10, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    codec = ImageCodec(channels=8)
    return ImagePipeline(codec, recogniser, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), AuxiliaryBranch(8, 10) if aux else None)


def test_the_auxiliary_branch_trains_but_is_absent_from_the_inference_graph() -> None:
    pipeline = _tiny_image_pipeline(aux=True).train()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    output = pipeline(images)
    assert output.aux_logits is not None and output.aux_logits.shape == (2, 10)
    loss, parts = rd_loss(output, torch.randn(2, 10), torch.zeros(2, dtype=torch.long), 1.0, 0.1, "distill", 64 * 64)
    loss.backward()
    assert pipeline.aux.layers[0].weight.grad is not None and "aux" in parts

    inference = pipeline.inference()
    aux_ids = {id(p) for p in pipeline.aux.parameters()}
    assert not aux_ids & {id(p) for p in inference.parameters()}
    assert not any(k.startswith("aux") for k in inference.state_dict())
    no_aux = _tiny_image_pipeline(aux=False).inference()
    assert count_parameters([inference]) == count_parameters([no_aux])  # no extra cost at inference
    pipeline.aux.register_forward_hook(lambda *_: pytest.fail("the auxiliary branch ran at inference"))
    with torch.inference_mode():
        assert inference(images.float() / 255).shape == (2, 10)


def test_image_codec_bitstream_decodes_deterministically_and_the_bit_map_sums_to_the_rate() -> None:
    pipeline = _tiny_image_pipeline(aux=False).eval()
    codec = pipeline.codec
    update_entropy_tables(codec)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        forward = codec(x)
        coded = codec.compress(x)
        decoded = codec.decompress(coded["strings"], coded["shape"])["x_hat"]
        bit_map = latent_bits(forward["likelihoods"]["y"])
        again = codec.decompress([[bytes(s) for s in strings] for strings in coded["strings"]], coded["shape"])
    assert decoded.shape == x.shape and 0 <= decoded.min() and decoded.max() <= 1
    # Decoding needs nothing but the bytes and gives the same image every time. (It is not the
    # forward pass's reconstruction: CompressAI's forward rounds y, its coder rounds y − μ.)
    assert torch.equal(decoded, again["x_hat"])
    assert bit_map.shape == (2, 4, 4)  # one value per latent position (stride 16)
    y_bits = float(-torch.log2(forward["likelihoods"]["y"]).sum())
    assert float(bit_map.sum()) == pytest.approx(y_bits, rel=1e-4)


def test_image_codec_pads_small_images_to_its_stride_and_crops_them_back() -> None:
    pipeline = _tiny_image_pipeline(aux=True).eval()
    update_entropy_tables(pipeline.codec)
    x = torch.rand(2, 3, 32, 40)  # CIFAR-sized; the codec needs multiples of 64
    with torch.inference_mode():
        forward = pipeline.codec(x)
        coded = pipeline.codec.compress(x)
        decoded = pipeline.codec.decompress(coded["strings"], coded["shape"])["x_hat"]
    assert forward["x_hat"].shape == x.shape
    assert forward["y_hat"].shape[-2:] == (4, 4) and decoded.shape[-2:] == (64, 64)


def test_bd_rate_of_a_curve_against_itself_is_zero_and_matches_a_hand_computation() -> None:
    rate = np.array([0.2, 0.4, 0.8, 1.6])
    top1 = np.array([40.0, 55.0, 63.0, 67.0])
    for method in ("pchip", "akima"):
        same = bd_pair((rate, top1), (rate, top1), method)
        assert same["bd_rate_percent"] == pytest.approx(0.0, abs=1e-9)
        assert same["bd_top1"] == pytest.approx(0.0, abs=1e-9)
        # Every point at 80 % of the anchor's rate: log-rate shifts by log(0.8) everywhere, so
        # the BD-rate is exactly 0.8 − 1 = −20 %, whatever the interpolation.
        cheaper = bd_pair((rate, top1), (0.8 * rate, top1), method)
        assert cheaper["bd_rate_percent"] == pytest.approx(-20.0, abs=1e-6)
        # Two points more top-1 at every rate: BD-accuracy is exactly +2.
        better = bd_pair((rate, top1), (rate, top1 + 2.0), method)
        assert better["bd_top1"] == pytest.approx(2.0, abs=1e-6)
    # Rates 0.16–1.28 against 0.2–1.6: 1.08 of the shorter range's 1.12 overlaps.
    assert cheaper["rate_overlap_percent"] == pytest.approx(100 * 1.08 / 1.12, abs=0.05)


def test_bd_table_warns_about_curves_that_barely_overlap_and_drops_dominated_points() -> None:
    rate, _ = monotone_curve(np.array([1.0, 0.5, 2.0, 4.0]), np.array([60.0, 50.0, 58.0, 70.0]))
    assert list(rate) == [0.5, 1.0, 4.0]  # 2.0 bpp for 58 % is dominated by 1.0 bpp for 60 %
    curves = {"none": (np.array([0.2, 0.4, 0.8]), np.array([40.0, 50.0, 60.0])),
              "far": (np.array([1.0, 2.0, 4.0]), np.array([58.0, 65.0, 70.0]))}
    table = bd_table(curves, "none")
    assert list(table["method"]) == ["pchip", "akima"] and set(table["test"]) == {"far"}
    assert table["warning"].str.contains("overlap").all()


def test_resnet50_conv2_x_trains_through_a_compression_model_with_random_weights() -> None:
    from splitbench.compression.sweep import build_pipeline

    zoo_model = load_model("resnet50", "none")
    with torch.inference_mode():
        features = zoo_model.cuts().head("conv2_x")(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, 256, 16, 16)  # 56×56 at 224; small inputs keep the test fast
    pipeline = build_pipeline(zoo_model, "conv2_x", "attention2", 16, "factorized", 0.0, (256, 16, 16), 0)
    output = pipeline(features.clone())
    loss, _ = rd_loss(output, torch.randn(2, 1000), torch.zeros(2, dtype=torch.long), 1.0, 0.0, "distill", 64 * 64)
    loss.backward()
    assert output.logits.shape == (2, 1000)
    assert all(p.grad is None for p in pipeline.tail.parameters())  # the backbone stays frozen
    assert pipeline.codec.encoder[0].weight.grad is not None
