"""PyTorch checkpoint files written without torch, as `torch.save` lays them out (for the reader's tests)."""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np


def write_torch_zip(state: dict[str, np.ndarray], path: Path, layouts: dict | None = None) -> None:
    """Write a torch>=1.6 zip checkpoint the way torch.save lays it out (without torch).

    The pickle must reference torch._utils._rebuild_tensor_v2 and torch.FloatStorage by name,
    so stand-in modules are installed only while pickling. `layouts` replaces a tensor's
    (offset, size, stride) as the pickle states them, to craft files that lie about their storage.
    """
    layouts = layouts or {}
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    class FloatStorage:
        pass

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    utils_mod._rebuild_tensor_v2, torch_mod.FloatStorage, torch_mod._utils = _rebuild_tensor_v2, FloatStorage, utils_mod

    class Tensor:
        def __init__(self, key, arr, layout=None):
            self.key, self.arr = key, arr
            self.layout = layout or (0, self.arr.shape, tuple(s // 4 for s in self.arr.strides))

        def __reduce__(self):
            offset, size, stride = self.layout
            return (_rebuild_tensor_v2, (("storage", self.key), offset, tuple(size), tuple(stride), False,
                                         collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "storage":
                return ("storage", FloatStorage, obj[1], "cpu", 0)
            return None

    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch_mod, "torch._utils": utils_mod})
    try:
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(collections.OrderedDict(
            (k, Tensor(str(i), np.ascontiguousarray(v, dtype="float32"), layouts.get(k)))
            for i, (k, v) in enumerate(state.items())))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/version", "3\n")
        for i, v in enumerate(state.values()):
            z.writestr(f"archive/data/{i}", np.ascontiguousarray(v, dtype="float32").tobytes())
