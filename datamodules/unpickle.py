"""A pickle loader that can only rebuild what the CIFAR files contain.

The CIFAR "python version" files are pickles of dicts of bytes/str/int/list and numpy uint8 arrays.
Any other global a pickle names (os.system, builtins.eval, ...) is refused before it is looked up,
so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

# How numpy pickles an ndarray: _reconstruct(ndarray, shape, dtype) then __setstate__ (protocol <= 4),
# or _frombuffer(buffer, dtype, shape, order) (protocol 5, Python >= 3.14's default). Both only
# build arrays; numpy 1 (the official files) and numpy 2 name their modules differently.
_reconstruct = np.empty(0).__reduce__()[0]
_frombuffer = np.empty(0).__reduce_ex__(5)[0]
ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            accepted = ", ".join(f"{m}.{n}" for m, n in ALLOWED)
            raise DataError(
                f"{self.path}: refusing to load global {module}.{name} from this pickle; "
                f"CIFAR files need only {accepted}"
            ) from None


def load_pickle(path: Path) -> Any:
    """Unpickle `path` with only plain containers and numpy arrays allowed."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as err:  # a truncated or non-pickle file fails in many ways
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {err})") from None
