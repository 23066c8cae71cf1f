"""Checkpoints read without running code from them.

A PyTorch checkpoint is a pickle, and unpickling can call any Python function the file
names. :func:`load_checkpoint` reads tensors, numbers, strings and containers only
(``torch.load(..., weights_only=True)``); a file that needs more is refused with
:class:`UntrustedCheckpointError`, which names the file and the ``--trust-checkpoint``
flag of the tools, unless the caller trusts the file. :func:`check_array_pickle` does
the same for Detectron2's ``.pkl`` model-zoo files (plain pickles of numpy arrays).
"""

import io
import os
import pickle
import re
from typing import Any, Union

import torch

TRUST_FLAG = "--trust-checkpoint"


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint that holds pickled Python objects other than tensors and plain data."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        super().__init__(
            f"refusing to load {self.path!r}: it holds pickled Python objects ({reason}), and loading "
            f"them could run code from the file. Nothing was loaded. If you trust where the file came "
            f"from, pass {TRUST_FLAG} (or trust=True in Python)."
        )


def load_checkpoint(path: Union[str, os.PathLike], trust: bool = False, map_location="cpu") -> Any:
    """``torch.load`` of ``path`` with tensors and plain data only, unless ``trust``.

    Raises :class:`UntrustedCheckpointError` (naming the file and the flag) for a file that
    needs other objects, and OSError / ValueError naming the file if it cannot be read.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as e:
        if trust:
            raise ValueError(f"{os.fspath(path)!r} is not a readable checkpoint ({e})") from e
        named = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise UntrustedCheckpointError(
            path, f"it names {named.group(1)}" if named else "objects other than tensors and plain data"
        ) from None
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{os.fspath(path)!r} is not a readable PyTorch checkpoint ({e})") from e


# What a plain pickle of numpy arrays names (Detectron2 / Caffe2 model-zoo .pkl files), numpy 1 and 2.
_ARRAY_GLOBALS = (
    {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
    | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not part of a numpy array")
        return super().find_class(module, name)


def check_array_pickle(path: Union[str, os.PathLike]) -> None:
    """Raise :class:`UntrustedCheckpointError` unless ``path`` is a pickle of numpy arrays and plain
    data only (read with an unpickler that resolves nothing else, so nothing runs)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise UntrustedCheckpointError(path, str(e)) from None
