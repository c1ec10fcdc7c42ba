"""models.torch_weights: PyTorch state dicts read with pickle and NumPy, legacy and zip layouts, no torch."""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.errors import MissingFileError, WeightsError
from models.torch_weights import LEGACY_MAGIC, LEGACY_PROTOCOL, read_state_dict


class _Tensor:
    """What a torch tensor pickles as: a view (offset, size, stride) of a keyed storage."""

    def __init__(self, key: str, storage: np.ndarray, offset: int, size: tuple, stride: tuple) -> None:
        self.key, self.storage, self.offset, self.size, self.stride = key, storage, offset, size, stride


def _fake_torch(monkeypatch) -> types.SimpleNamespace:
    """Modules named as torch's, so pickle writes the globals a real state dict names (torch is not installed)."""
    utils = types.ModuleType("torch._utils")
    torch = types.ModuleType("torch")

    def _rebuild_tensor_v2(*args):  # pragma: no cover - only pickled, never called
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storages = {}
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        storages[name] = cls
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return types.SimpleNamespace(rebuild=_rebuild_tensor_v2, storages=storages)


def _pickle_state(state: dict[str, _Tensor], fake, legacy: bool) -> bytes:
    kinds = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, np.ndarray):
                pid = ("storage", fake.storages[kinds[obj.dtype]], self.keys[id(obj)], "cpu", obj.size)
                return (*pid, None) if legacy else pid  # the legacy layout adds a view's metadata
            return None

        def reducer_override(self, obj):
            if isinstance(obj, _Tensor):
                return fake.rebuild, (obj.storage, obj.offset, obj.size, obj.stride, False, collections.OrderedDict())
            return NotImplemented

    buf = io.BytesIO()
    p = Pickler(buf, protocol=2)
    p.keys = {id(t.storage): t.key for t in state.values()}
    p.dump(collections.OrderedDict(state))
    return buf.getvalue()


def _write_legacy(path: Path, state: dict[str, _Tensor], fake, cut: int = 0) -> Path:
    storages = {t.key: t.storage for t in state.values()}
    with open(path, "wb") as f:
        for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL, "little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(_pickle_state(state, fake, legacy=True))
        pickle.dump(list(storages), f, protocol=2)
        for data in storages.values():
            f.write(np.int64(data.size).tobytes() + data.tobytes())
    if cut:
        path.write_bytes(path.read_bytes()[:-cut])
    return path


def _write_zip(path: Path, state: dict[str, _Tensor], fake) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _pickle_state(state, fake, legacy=False))
        z.writestr("archive/version", "3\n")
        for t in state.values():
            z.writestr(f"archive/data/{t.key}", t.storage.tobytes())
    return path


def _state() -> tuple[dict[str, _Tensor], dict[str, np.ndarray]]:
    """A conv kernel stored channels-last (a strided view, as in the Lite0 file), a vector at an offset, a count."""
    kernel = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    channels_last = np.ascontiguousarray(kernel.transpose(0, 2, 3, 1)).ravel()
    shared = np.arange(10, dtype=np.float32)
    state = {
        "conv.weight": _Tensor("0", channels_last, 0, (2, 3, 2, 2), (12, 1, 6, 3)),
        "bn.bias": _Tensor("1", shared, 4, (3,), (1,)),
        "bn.num_batches_tracked": _Tensor("2", np.array([7], np.int64), 0, (), ()),
    }
    return state, {"conv.weight": kernel, "bn.bias": shared[4:7], "bn.num_batches_tracked": np.int64(7)}


@pytest.mark.parametrize("layout", [_write_legacy, _write_zip])
def test_reads_strided_views_offsets_and_scalars_in_both_layouts(tmp_path, monkeypatch, layout) -> None:
    state, expected = _state()
    path = layout(tmp_path / "w.pth", state, _fake_torch(monkeypatch))
    monkeypatch.delitem(sys.modules, "torch")  # the reader needs no torch
    monkeypatch.delitem(sys.modules, "torch._utils")
    got = read_state_dict(path)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].dtype == np.asarray(value).dtype
    assert got["conv.weight"].flags["C_CONTIGUOUS"]


def test_a_truncated_file_names_itself(tmp_path, monkeypatch) -> None:
    state, _ = _state()
    path = _write_legacy(tmp_path / "cut.pth", state, _fake_torch(monkeypatch), cut=5)
    with pytest.raises(WeightsError, match=r"cut\.pth.*ends early"):
        read_state_dict(path)


def test_refuses_to_build_anything_but_tensors(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("ran code from the file",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, {}):
            pickle.dump(obj, f)
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(WeightsError, match="does not hold builtins.print"):
        read_state_dict(path)


def test_missing_and_foreign_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(MissingFileError, match="not found"):
        read_state_dict(tmp_path / "absent.pth")
    other = tmp_path / "other.pth"
    other.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsError, match="no PyTorch magic number"):
        read_state_dict(other)
