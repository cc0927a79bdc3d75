"""The architecture zoo: plain ``nn.Module``s that know nothing of training, and a registry that
builds any of them by name and knows its depth, reference and input size.

    >>> import architectures
    >>> model = architectures.create("resnet56")
    >>> architectures.info("resnet56").depth
    56
    >>> architectures.depth("resnet56")  # measured by a forward pass when a registration does not give it
    56

Models from outside register the same way (docs/architectures.md#your-own-models)::

    @architectures.register_model(family="mynet", input_size=(3, 32, 32), num_classes=10)
    def my_net(num_classes: int = 10, in_chans: int = 3) -> nn.Module: ...
"""

from . import alexnet, densenet, googlenet, lenet, resnet, unet, vgg  # noqa: F401  (register the families)
from .cost import Profile, profile
from .registry import ArchInfo, ArchitectureError, count_params, create, depth, info, names, register, register_model

__all__ = [
    "ArchInfo",
    "ArchitectureError",
    "Profile",
    "count_params",
    "create",
    "depth",
    "info",
    "names",
    "profile",
    "register",
    "register_model",
]
