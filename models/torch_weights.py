"""Read a PyTorch state dict (``.pth``) with ``pickle`` and NumPy alone: no torch.

Two layouts exist. The legacy one (torch < 1.6, and files saved with
``_use_new_zipfile_serialization=False``) is one stream: pickled magic number,
protocol version and system info, then the pickled state dict whose tensors name
their storages by key, then a pickled list of those keys, then each storage as an
8-byte little-endian element count followed by its raw little-endian data. The zip
layout (torch >= 1.6) holds the pickled state dict as ``*/data.pkl`` and each
storage as ``*/data/KEY``. In both, a tensor is a view (offset, size, stride) of
its storage.

The unpickler only builds what a state dict holds (ordered dicts, tensors, storages);
any other class raises, so reading a file cannot run code from it.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.errors import MissingFileError, WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
"""Element type of each storage class a state dict may name (``torch.FloatStorage``, ...)."""


class _TensorRef:
    """A tensor before its storage is read: the storage's key and dtype, and the view on it."""

    def __init__(self, storage: tuple, offset: int, size: tuple, stride: tuple, *_rest: Any) -> None:
        _tag, self.dtype, self.key = storage[0], storage[1], str(storage[2])
        self.offset, self.size, self.stride = int(offset), tuple(size), tuple(stride)

    def array(self, storage: np.ndarray) -> np.ndarray:
        """The tensor's values, copied out of ``storage`` as a C-contiguous array."""
        if not self.size:
            return storage[self.offset].copy()
        item = storage.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False
        )
        return np.ascontiguousarray(view)


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict, and refuses every class a state dict does not need."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _TensorRef
        if module == "torch" and name in STORAGE_DTYPES:
            return np.dtype(STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"a state dict does not hold {module}.{name}")

    def persistent_load(self, pid: Any) -> tuple:
        # ("storage", storage class, key, location, numel[, view metadata]): the class is the dtype above.
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return pid


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read the tensors of a PyTorch ``.pth`` state dict, legacy or zip layout, as NumPy arrays by name.

    Raises:
        MissingFileError: If ``path`` does not exist.
        WeightsError: If the file is not a state dict this reader understands; the message names it.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            refs, storages = _read_zip(path)
        else:
            with open(path, "rb") as f:
                refs, storages = _read_legacy(f)
        return {name: ref.array(storages[ref.key]) for name, ref in refs.items()}
    except FileNotFoundError as e:
        raise MissingFileError(f"PyTorch weights file not found: {path}") from e
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise WeightsError(f"{path} is not a PyTorch state dict this reader understands: {e}") from e


def _tensors(obj: Any) -> dict[str, _TensorRef]:
    if not isinstance(obj, dict):
        raise ValueError(f"the file holds a {type(obj).__name__}, not a state dict")
    refs = {k: v for k, v in obj.items() if isinstance(v, _TensorRef)}
    if not refs:
        raise ValueError("the state dict holds no tensors")
    return refs


def _read_legacy(f: BinaryIO) -> tuple[dict[str, _TensorRef], dict[str, np.ndarray]]:
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise ValueError("no PyTorch magic number at the start")
    protocol = pickle.load(f)
    if protocol != LEGACY_PROTOCOL:
        raise ValueError(f"protocol version {protocol}, this reader knows {LEGACY_PROTOCOL}")
    info = pickle.load(f)
    if not info.get("little_endian", True):
        raise ValueError("the file was written big-endian")
    refs = _tensors(_StateDictUnpickler(f).load())
    keys = [str(k) for k in pickle.load(f)]
    dtypes = {r.key: r.dtype for r in refs.values()}
    storages = {}
    for key in keys:
        count = int(np.frombuffer(f.read(8), "<i8")[0])
        dtype = dtypes.get(key, np.dtype(np.uint8))
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"storage {key} ends early ({len(data)} of {count * dtype.itemsize} bytes)")
        storages[key] = np.frombuffer(data, dtype.newbyteorder("<"))
    return refs, storages


def _read_zip(path: Path) -> tuple[dict[str, _TensorRef], dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as z:
        pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
        if pkl is None:
            raise ValueError("a zip without data.pkl")
        root = pkl[: -len("data.pkl")]
        with z.open(pkl) as f:
            refs = _tensors(_StateDictUnpickler(f).load())
        storages = {
            r.key: np.frombuffer(z.read(f"{root}data/{r.key}"), r.dtype.newbyteorder("<")) for r in refs.values()
        }
    return refs, storages
