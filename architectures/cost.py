"""Cost accounting from one real forward pass: parameters, MACs, per-layer output shapes, depth; and
parameter counts alone from a build on the meta device, which allocates and computes nothing.

MACs are multiply-accumulates of conv and linear layers only, as torchvision's metadata and timm
count them (FLOPs = 2 x MACs). They come from ``torch.utils.flop_counter``, never from per-layer
formulas, so whatever the forward really computes is what gets counted."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakTensorKeyDictionary

WEIGHTED_OPS = {
    torch.ops.aten.convolution.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.mm.default,
    torch.ops.aten.bmm.default,
}


@dataclass
class Layer:
    name: str
    type: str
    output_shape: list[int]
    params: int
    macs: int


@dataclass
class Profile:
    input_size: tuple[int, int, int]
    params: int
    trainable_params: int
    macs: int
    depth: int
    output_shape: list[int]
    layers: list[Layer] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _DepthMode(TorchDispatchMode):
    """Tags every tensor with the number of conv/linear ops on the longest path that produced it."""

    def __init__(self) -> None:
        super().__init__()
        self.depth: WeakTensorKeyDictionary = WeakTensorKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        inputs = [
            t
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter)
        ]
        d = max((self.depth.get(t, 0) for t in inputs), default=0) + (func in WEIGHTED_OPS)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.depth[t] = max(d, self.depth.get(t, 0))
        return out

    def output_depth(self, out: object) -> int:
        return max(self.depth.get(t, 0) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))


def weighted_depth(model: nn.Module, x: torch.Tensor) -> int:
    """Conv/linear layers on the deepest input-to-output path of a real forward pass: the
    papers' "depth" (a ResNet's projection shortcuts and an Inception module's parallel branches
    do not add to it)."""
    mode = _DepthMode()
    with torch.no_grad(), mode:
        out = model(x)
    return mode.output_depth(out)


def profile(model: nn.Module, input_size: tuple[int, int, int]) -> Profile:
    """Profile ``model`` in eval mode with one forward pass on a zero input of ``input_size``
    (C, H, W): leaf-module hooks record output shapes while the flop counter and the depth
    tracker watch the same pass."""
    shapes: dict[str, list[int]] = {}

    def hook(name: str):  # type: ignore[no-untyped-def]
        def record(_m: nn.Module, _inp: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                shapes.setdefault(name, list(out.shape[1:]))

        return record

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n and not list(m.children())]
    depth = _DepthMode()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter, depth:
            out = model(torch.zeros(1, *input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    flops = counter.get_flop_counts()
    prefix = type(model).__name__
    layers = [
        Layer(
            n,
            type(m).__name__,
            shapes[n],
            sum(p.numel() for p in m.parameters(recurse=False)),
            sum(flops.get(f"{prefix}.{n}", {}).values()) // 2,
        )
        for n, m in model.named_modules()
        if n in shapes
    ]
    return Profile(
        input_size=tuple(input_size),
        params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=counter.get_total_flops() // 2,
        depth=depth.output_depth(out),
        output_shape=list(out.shape[1:]),
        layers=layers,
    )


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Builds on the meta device, with ``torch.nn.init``'s in-place initialisers as no-ops: the same
    shapes with no memory and no arithmetic (a random draw into a meta tensor still runs PyTorch's
    Python reference implementation, so the initialisers would be nearly all of a build's time)."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        with torch.device("meta"):
            yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)
