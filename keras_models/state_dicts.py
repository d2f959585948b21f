"""Read checkpoints into `{name: numpy array}` without PyTorch, and without running pickled code.

`.pth` files are pickles. We unpickle them with an allow-list that only rebuilds tensors
and ordered dicts: anything else a pickle asks to import (os.system, builtins.eval, ...) is
refused with `UnsafeCheckpointError` before it can run.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model (message is one line)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle tried to import something a plain state dict never needs."""


class CorruptTensorError(CheckpointError):
    """A tensor whose stated layout does not fit its storage (a corrupt or crafted file)."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _Storage:
    def __init__(self, storage_type: _StorageType, key: str):
        self.type, self.key, self.data = storage_type, key, None

    def array(self) -> np.ndarray:
        if self.data is None or len(self.data) % self.type.itemsize:
            raise CorruptTensorError(f"storage {self.key} is missing or not a whole number of "
                                  f"{self.type.name} elements: a corrupt or crafted checkpoint")
        if self.type.dtype == "bfloat16":  # widen bf16 to f32 through the bit pattern
            bits = np.frombuffer(self.data, dtype=np.uint16).astype(np.uint32) << 16
            return bits.view(np.float32)
        return np.frombuffer(self.data, dtype=self.type.dtype)


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self, name: str = "?") -> np.ndarray:
        """A copy of the tensor, after checking that every element it claims lies inside its storage.

        The pickle's offset, sizes and strides are the file's word, not facts: `as_strided` on
        unchecked ones reads memory outside the storage (a crafted file would crash the process or
        return heap bytes as weights). `torch.load` refuses the same files.
        """
        flat = self.storage.array()
        _check_bounds(name, self.offset, self.size, self.stride, len(flat))
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=[s * flat.dtype.itemsize for s in self.stride]
        )
        return np.array(view)  # own, contiguous copy


def _check_bounds(name: str, offset, size: tuple, stride: tuple, numel: int) -> None:
    def whole(values) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)

    what = f"tensor '{name}' (offset {offset}, size {list(size)}, stride {list(stride)})"
    if not whole([offset]) or not whole(size) or not whole(stride) or len(size) != len(stride):
        raise CorruptTensorError(f"{what} has a negative or malformed shape: a corrupt or crafted checkpoint")
    if 0 in size:
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= numel:
        raise CorruptTensorError(f"{what} reaches element {last} of a storage of {numel}: "
                              "a corrupt or crafted checkpoint")


def _rebuild_tensor(storage, storage_offset, size, stride, *args):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *args):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage], path: str):
        super().__init__(file)
        self.storages, self.path = storages, path

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"refusing to load {self.path}: its pickle imports {module}.{name}, which a weights "
            "file never needs (it could run code); re-save it as .safetensors from a trusted source"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"refusing to load {self.path}: unexpected persistent id {pid!r:.60}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"refusing to load {self.path}: unknown storage type")
        return self.storages.setdefault(key, _Storage(storage_type, key))


def _materialize(obj, name: str = ""):
    if isinstance(obj, _LazyTensor):
        return obj.materialize(name)
    if isinstance(obj, dict):
        return {k: _materialize(v, f"{name}.{k}" if name else str(k)) for k, v in obj.items()}
    return obj


def _read_torch_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        pkl = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise CheckpointError(f"cannot read {path}: a zip file without data.pkl is not a PyTorch checkpoint")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _SafeUnpickler(io.BytesIO(z.read(pkl)), storages, str(path)).load()
        for key, storage in storages.items():
            storage.data = z.read(f"{prefix}data/{key}")
    return obj


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_torch_legacy(path: Path) -> dict:
    """Pre-1.6 format: magic, version, sys_info, the object, storage keys, then raw storages."""
    with open(path, "rb") as f:
        if _SafeUnpickler(f, {}, str(path)).load() != _LEGACY_MAGIC:
            raise CheckpointError(f"cannot read {path}: not a PyTorch checkpoint (bad magic number)")
        _SafeUnpickler(f, {}, str(path)).load()  # protocol version
        _SafeUnpickler(f, {}, str(path)).load()  # sys_info
        storages: dict[str, _Storage] = {}
        obj = _SafeUnpickler(f, storages, str(path)).load()
        keys = _SafeUnpickler(f, {}, str(path)).load()
        for key in keys:
            storage = storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * storage.type.itemsize
            storage.data = f.read(nbytes)
            if len(storage.data) != nbytes:
                raise CheckpointError(f"cannot read {path}: the file is truncated (storage {key})")
    return obj


def _unwrap(obj, path: Path) -> dict[str, np.ndarray]:
    """Accept bare state dicts and the usual {"state_dict"|"model"|"state_dict_ema": ...} wrappers."""
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise CheckpointError(f"cannot read {path}: it holds a {type(obj).__name__}, not a state dict")
    out = {}
    for k, v in obj.items():
        if isinstance(v, np.ndarray):
            out[k[7:] if k.startswith("module.") else k] = v
    return out


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """`.safetensors`, `.pth`/`.pt`/`.bin` (zip or legacy torch), `.npz` -> {key: array}."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            return load_file(str(path))
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if zipfile.is_zipfile(path):
            return _unwrap(_materialize(_read_torch_zip(path)), path)
        return _unwrap(_materialize(_read_torch_legacy(path)), path)
    except CorruptTensorError as e:
        raise CorruptTensorError(f"cannot read {path}: {e}") from None
    except CheckpointError:
        raise
    except Exception as e:  # truncated or foreign files surface here as many exception types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot read {path}: truncated or not a checkpoint ({msg})") from None


def read_named_h5(path: str | Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Keras legacy `.h5` weights (keras.applications files, our cache): layer -> [(name, array)]."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            names = [n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]]
            out = {}
            for layer in names:
                group = root[layer]
                wnames = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
                if wnames:
                    out[layer] = [(f"{layer}/{w}", np.asarray(group[w])) for w in wnames]
            return out
    except (OSError, KeyError) as e:
        msg = str(e).splitlines()[0]
        raise CheckpointError(f"cannot read {path} as Keras .h5 weights ({msg})") from None


def write_named_h5(named: dict[str, list[tuple[str, np.ndarray]]], path: str | Path) -> None:
    """Write layer-keyed weights in the Keras legacy layout (loadable by name)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in named]
        for layer, weights in named.items():
            g = f.create_group(layer)
            wnames = [f"{layer}/{i}" for i in range(len(weights))]
            g.attrs["weight_names"] = [w.encode() for w in wnames]
            for w, (_, arr) in zip(wnames, weights):
                g.create_dataset(w, data=arr)
