"""The architecture zoo: plain ``nn.Module``s that know nothing of training, and a registry that
builds any of them by name and knows its depth, reference and input size.

    >>> import architectures
    >>> model = architectures.create("resnet56")
    >>> architectures.info("resnet56").depth
    56
"""

from . import alexnet, densenet, googlenet, lenet, resnet, unet, vgg  # noqa: F401  (register the families)
from .cost import Profile, count_params, profile
from .registry import ArchInfo, ArchitectureError, create, info, names

__all__ = ["ArchInfo", "ArchitectureError", "Profile", "count_params", "create", "info", "names", "profile"]
