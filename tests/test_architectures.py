"""The zoo against the published figures (../shared/reference/published-figures.md)."""

from __future__ import annotations

import pytest
import torch

import architectures as A
from architectures.cost import weighted_depth
from architectures.googlenet import Inception
from architectures.resnet import Block

# name: (parameters, GMACs to the published digits) for 1000 classes at 3x224x224
IMAGENET = {
    "alexnet": (61_100_840, 0.714),
    "vgg11": (132_863_336, 7.609),
    "vgg11_bn": (132_868_840, 7.609),
    "vgg13": (133_047_848, 11.308),
    "vgg13_bn": (133_053_736, 11.308),
    "vgg16": (138_357_544, 15.470),
    "vgg16_bn": (138_365_992, 15.470),
    "vgg19": (143_667_240, 19.632),
    "vgg19_bn": (143_678_248, 19.632),
    "googlenet": (6_624_904, 1.498),
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
    "densenet121": (7_978_856, 2.834),
    "densenet161": (28_681_000, 7.728),
    "densenet169": (14_149_480, 3.360),
    "densenet201": (20_013_928, 4.291),
}
# CIFAR ResNets, option A, 10 classes at 3x32x32: (parameters, MACs in millions to one decimal)
CIFAR = {20: (269_722, 40.6), 32: (464_154, 68.9), 44: (658_586, 97.2), 56: (853_018, 125.5), 110: (1_727_962, 252.9)}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_params_and_macs(name: str) -> None:
    params, gmacs = IMAGENET[name]
    prof = A.profile(A.create(name), (3, 224, 224))
    assert prof.params == params
    assert round(prof.macs / 1e9, 3) == gmacs


@pytest.mark.parametrize("depth", CIFAR)
def test_cifar_resnets_and_plain_twins(depth: int) -> None:
    params, mmacs = CIFAR[depth]
    for name in (f"resnet{depth}", f"plain{depth}"):
        prof = A.profile(A.create(name), (3, 32, 32))
        assert (prof.params, round(prof.macs / 1e6, 1), prof.depth) == (params, mmacs, depth), name
    assert n_params(A.create(f"resnet{depth}", shortcut="B")) == params + 2_752  # option B: two 1x1 projections


def test_resnet1202() -> None:
    prof = A.profile(A.create("resnet1202"), (3, 32, 32))
    assert prof.params == 19_421_274 and round(prof.macs / 1e9, 2) == 2.83 and prof.depth == 1202
    assert n_params(A.create("plain1202")) == 19_421_274


@pytest.mark.parametrize("depth,gmacs", [(50, 3.858), (101, 7.570), (152, 11.282)])
def test_resnet_v1_stride_in_1x1(depth: int, gmacs: float) -> None:
    prof = A.profile(A.create(f"resnet{depth}", stride_in_1x1=True), (3, 224, 224))
    assert prof.params == IMAGENET[f"resnet{depth}"][0]
    assert round(prof.macs / 1e9, 3) == gmacs


def test_lenet5() -> None:
    assert n_params(A.create("lenet5")) == 61_706


def test_alexnet_paper_seed_arithmetic() -> None:
    prof = A.profile(A.create("alexnet_paper"), (3, 227, 227))
    conv1, pool1 = prof.layers[0], next(layer for layer in prof.layers if layer.type == "MaxPool2d")
    assert (conv1.type, conv1.output_shape) == ("Conv2d", [96, 55, 55])
    assert (pool1.output_shape, pool1.params) == ([96, 27, 27], 0)
    assert prof.params == 62_378_344  # the paper's widths, single tower
    assert n_params(A.create("alexnet_paper", groups=2)) < prof.params  # the two-GPU split connectivity


def test_googlenet_paper_differs_and_aux_heads() -> None:
    tv, paper = A.profile(A.create("googlenet"), (3, 224, 224)), A.profile(A.create("googlenet_paper"), (3, 224, 224))
    assert paper.params != tv.params and paper.macs > tv.macs  # the true 5x5 branch costs more
    assert not any(layer.type == "BatchNorm2d" for layer in paper.layers)
    model = A.create("googlenet", num_classes=7, aux_logits=True).train()
    outs = model(torch.randn(2, 3, 224, 224))
    assert [o.shape for o in outs] == [torch.Size([2, 7])] * 3
    assert model.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 7)


def inception_profile(**reduce: int) -> A.Profile:
    module = Inception(
        256,
        128,
        reduce.get("c3r", 0),
        192,
        reduce.get("c5r", 0),
        96,
        reduce.get("pool", 0),
        five_kernel=5,
        batch_norm=False,
    )
    return A.profile(module, (256, 28, 28))


def test_inception_naive_and_bottleneck_macs() -> None:
    naive = inception_profile()
    assert naive.output_shape == [672, 28, 28] and naive.macs == 854_196_224
    bottleneck = inception_profile(c3r=64, c5r=64, pool=64)
    # 1x1/128 + (1x1/64 -> 3x3/192) + (1x1/64 -> 5x5/96) + (pool -> 1x1/64), all on 28x28
    hw = 28 * 28
    expected = hw * (256 * 128 + 256 * 64 + 9 * 64 * 192 + 256 * 64 + 25 * 64 * 96 + 256 * 64)
    assert bottleneck.output_shape == [480, 28, 28] and bottleneck.macs == expected == 271_351_808
    assert naive.macs / bottleneck.macs > 3


def test_unet_geometry() -> None:
    assert n_params(A.create("unet")) == 31_030_658
    unet = A.create("unet").eval()
    with torch.no_grad():
        assert unet(torch.zeros(1, 1, 572, 572)).shape == (1, 2, 388, 388)  # the paper's figure 1
        assert unet(torch.zeros(1, 1, 188, 188)).shape == (1, 2, 4, 4)  # the smallest valid size
    assert A.create("unet_padded", in_chans=3, num_classes=5)(torch.randn(2, 3, 64, 64)).shape == (2, 5, 64, 64)


def test_vgg_pattern_any_shape() -> None:
    model = A.create("vgg_pattern", convs_per_stage=5, stages=4, base_width=8, in_chans=1, num_classes=3)
    assert weighted_depth(model.eval(), torch.randn(1, 1, 32, 32)) == 4 * 5 + 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert [A.info(n).depth for n in A.names("vggp*")] == [4, 7, 10, 13, 19, 25]


def small_input(name: str) -> tuple[int, int, int]:
    info = A.info(name)
    c, h, _ = info.input_size
    if info.task == "segmentation":
        return (c, 188, 188) if name == "unet" else (c, 32, 32)
    return (c, 96, 96) if h >= 224 else info.input_size  # the 224 px nets run on small inputs too


@pytest.mark.parametrize("name", A.names())
def test_forward_backward_and_depth(name: str) -> None:
    info = A.info(name)
    model = A.create(name, num_classes=5)
    x = torch.randn(2, *small_input(name))
    out = model(x)
    assert tuple(out.shape[:2]) == (2, 5)  # logits, or U-Net's 5 class maps
    out.float().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert weighted_depth(model.eval(), x[:1]) == info.depth


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "googlenet", "vgg11_bn"])
def test_imagenet_nets_take_32px_grey(name: str) -> None:
    assert A.create(name, in_chans=1, num_classes=10)(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", A.names("plain*"))
def test_plain_twins_have_no_shortcut(name: str) -> None:
    model = A.create(name)
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert blocks and all(b.shortcut is None for b in blocks)
    assert A.info(name).residual is False and A.info(name.replace("plain", "resnet")).residual is True


def test_shortcut_carries_the_input_only_in_the_residual_net() -> None:
    """Silence each block's residual function: a residual block then passes relu(x) on, a plain
    block passes nothing. This is what the shortcut is, tested by behaviour, not by attribute."""
    x = torch.randn(1, 16, 8, 8)
    for name, expect_identity in (("resnet20", True), ("plain20", False)):
        block = A.create(name).stages[0][0].eval()
        torch.nn.init.zeros_(block.residual[-1].weight)
        torch.nn.init.zeros_(block.residual[-1].bias)
        out = block(x)
        assert torch.equal(out, torch.relu(x)) if expect_identity else torch.count_nonzero(out) == 0


def test_registry_names_info_and_errors() -> None:
    assert A.names("resnet*")[:5] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert set(A.names("densenet*")) >= {"densenet121", "densenet40_k12"}
    i = A.info("resnet56")
    assert (i.family, i.depth, i.residual, i.input_size) == ("resnet_cifar", 56, True, (3, 32, 32))
    with pytest.raises(A.ArchitectureError, match="closest: resnet56"):
        A.info("resnet57")
    with pytest.raises(A.ArchitectureError, match="does not take override.*widthh.*accepts:"):
        A.create("resnet20", widthh=3)


def test_count_params_on_the_meta_device_matches_real_builds_and_the_papers() -> None:
    for name, (params, _) in IMAGENET.items():
        assert A.count_params(name) == params, name
    for depth, (params, _) in CIFAR.items():
        assert A.count_params(f"plain{depth}") == A.count_params(f"resnet{depth}") == params
    for name, kwargs in (
        ("lenet5", {}),
        ("resnet20", {"shortcut": "B"}),
        ("vggp7", {"num_classes": 7}),
        ("unet_padded", {}),
    ):
        assert A.count_params(name, **kwargs) == n_params(A.create(name, **kwargs)), name
    real = torch.zeros(3, 3)
    torch.nn.init.ones_(real)  # the initialisers are themselves again afterwards
    assert real.sum() == 9
    with pytest.raises(A.ArchitectureError):
        A.count_params("resnet20", nosuch=1)
    torch.nn.init.zeros_(real)
    assert real.sum() == 0
