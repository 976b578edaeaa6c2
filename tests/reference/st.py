"""Minimal safetensors and .npy helpers (no dependency beyond numpy).

safetensors layout: an 8-byte little-endian u64 N, then N bytes of JSON
header {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}} padded with spaces to a multiple of 8, then the
raw little-endian tensor data (offsets are relative to the data start).
"""

import json
import os
import struct

import numpy as np

# safetensors dtype name <-> numpy little-endian dtype
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


class SafetensorsError(ValueError):
    pass


def _dtype_name(dt):
    dt = np.dtype(dt)
    for name, d in _DTYPES.items():
        if d.kind == dt.kind and d.itemsize == dt.itemsize:
            return name
    raise SafetensorsError("unsupported dtype %s" % dt)


def save_file(path, tensors, metadata=None):
    """Write {name: np.ndarray} (insertion order kept) to `path` atomically.

    Arrays are written as their own dtype in little-endian C order; cast to
    float32 before calling to get F32. metadata: {str: str} or None.
    """
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError("__metadata__ must map str to str (key %r)" % (k,))
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        if name == "__metadata__":
            raise SafetensorsError("tensor name __metadata__ is reserved")
        arr = np.asarray(arr)
        dname = _dtype_name(arr.dtype)
        data = np.ascontiguousarray(arr, dtype=_DTYPES[dname]).tobytes(order="C")
        header[name] = {
            "dtype": dname,
            "shape": [int(s) for s in arr.shape],
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_file(path):
    """Read a safetensors file -> (dict name -> np.ndarray, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SafetensorsError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise SafetensorsError("%s: header length %d past end of file" % (path, n))
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError("%s: bad JSON header: %s" % (path, e))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dt = _DTYPES.get(info.get("dtype"))
        if dt is None:
            raise SafetensorsError("%s: %s: unsupported dtype %r" % (path, name, info.get("dtype")))
        shape = tuple(info["shape"])
        b, e = info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * dt.itemsize or e > len(data) or b < 0:
            raise SafetensorsError("%s: %s: bad data_offsets" % (path, name))
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(shape).copy()
    return out, meta


def save_npy(path, arr):
    """Write a float32 C-order .npy (format 1.0)."""
    arr = np.ascontiguousarray(arr, dtype="<f4")
    np.save(path, arr, allow_pickle=False)
