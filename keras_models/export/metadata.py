"""TFLite model metadata that Android reads: labels and input normalisation travel in the file.

Writes the `TFLITE_METADATA` flatbuffer (tflite-support's `metadata_schema.fbs`, file id "M001")
and packs `labels.txt` as an associated file: a zip appended to the model, as tflite-support's
MetadataPopulator does. MediaPipe's `ImageClassifier`, the TFLite Task Library and
`MetadataExtractor` read both. tflite-support itself pins protobuf 3.20 (it would break
TensorFlow 2.21), so the few tables needed are built here with `flatbuffers` directly.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import flatbuffers
from flatbuffers.table import Table

METADATA_NAME = "TFLITE_METADATA"
FILE_ID = b"M001"
PARSER_VERSION = "1.0.0"  # only fields from schema 1.0.0 are written
_RGB = 1  # ColorSpaceType.RGB
_IMAGE_PROPERTIES = 2  # ContentProperties union tag
_NORMALIZATION = 1  # ProcessUnitOptions union tag
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType


@dataclass(frozen=True)
class ClassifierMetadata:
    name: str
    description: str
    version: str
    image_size: int
    mean: tuple[float, float, float]  # what the app subtracts from RGB 0-255 pixels...
    std: tuple[float, float, float]  # ...and divides by; (0, 0, 0)/(1, 1, 1): feed raw pixels
    labels: tuple[str, ...]
    input_name: str = "image"
    output_name: str = "probabilities"


def _table(b: flatbuffers.Builder, fields: list[tuple[int, str, object]]) -> int:
    """One table from (slot, kind, value): kind is 'off' (offset), 'i8', 'u32'; None is left out."""
    b.StartObject(max(slot for slot, _, _ in fields) + 1)
    for slot, kind, value in fields:
        if value is None:
            continue
        if kind == "off":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "i8":
            b.PrependInt8Slot(slot, value, 0)
        else:
            b.PrependUint32Slot(slot, value, 0)
    return b.EndObject()


def _vector(b: flatbuffers.Builder, items: list, kind: str = "off") -> int:
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        b.PrependFloat32(item) if kind == "f32" else b.PrependUOffsetTRelative(item)
    return b.EndVector()


def build_metadata(meta: ClassifierMetadata) -> bytes:
    """The ModelMetadata flatbuffer for a one-input image classifier with a labels file."""
    b = flatbuffers.Builder(1024)
    s = b.CreateString
    # Input: an RGB image of image_size, normalised by (x - mean) / std out of graph.
    size = _table(b, [(0, "u32", meta.image_size), (1, "u32", meta.image_size)])
    image_props = _table(b, [(0, "i8", _RGB), (1, "off", size)])
    content = _table(b, [(0, "i8", _IMAGE_PROPERTIES), (1, "off", image_props)])
    mean, std = _vector(b, list(meta.mean), "f32"), _vector(b, list(meta.std), "f32")
    norm = _table(b, [(0, "off", mean), (1, "off", std)])
    unit = _table(b, [(0, "i8", _NORMALIZATION), (1, "off", norm)])
    units = _vector(b, [unit])
    stats = _table(b, [(0, "off", _vector(b, [255.0], "f32")), (1, "off", _vector(b, [0.0], "f32"))])
    in_name, in_desc = s(meta.input_name), s("RGB image, pixel values 0-255 before normalisation")
    tensor_in = _table(b, [(0, "off", in_name), (1, "off", in_desc), (3, "off", content),
                           (4, "off", units), (5, "off", stats)])
    # Output: one probability per class, labelled by labels.txt.
    file_name, file_desc = s("labels.txt"), s("class names, one per line, in output order")
    labels_file = _table(b, [(0, "off", file_name), (1, "off", file_desc), (2, "i8", _TENSOR_AXIS_LABELS)])
    out_name, out_desc = s(meta.output_name), s("probability of each class")
    b.StartObject(0)
    feature = b.EndObject()  # FeatureProperties: an empty table
    out_content = _table(b, [(0, "i8", 1), (1, "off", feature)])
    tensor_out = _table(b, [(0, "off", out_name), (1, "off", out_desc), (3, "off", out_content),
                            (6, "off", _vector(b, [labels_file]))])
    subgraph = _table(b, [(2, "off", _vector(b, [tensor_in])), (3, "off", _vector(b, [tensor_out]))])
    name, desc, version, parser = s(meta.name), s(meta.description), s(meta.version), s(PARSER_VERSION)
    root = _table(b, [(0, "off", name), (1, "off", desc), (2, "off", version),
                      (3, "off", _vector(b, [subgraph])), (7, "off", parser)])
    b.Finish(root, file_identifier=FILE_ID)
    return bytes(b.Output())


def populate(model: bytes, meta: ClassifierMetadata) -> bytes:
    """`model` with the metadata buffer added and labels.txt appended as a zip member."""
    from ai_edge_litert import schema_py_generated as schema

    tfl = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    tfl.metadata = [m for m in (tfl.metadata or []) if m.name.decode() != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = list(build_metadata(meta))
    tfl.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(tfl.buffers) - 1
    tfl.metadata.append(entry)
    b = flatbuffers.Builder(len(model) + 4096)
    b.Finish(tfl.Pack(b), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(b.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:  # appended, like tflite-support
        zf.writestr("labels.txt", "".join(f"{label}\n" for label in meta.labels))
    return out.getvalue()


# --- reading back (verify, tests, and anyone curious without tflite-support) ----------------
def _field(t: Table, slot: int) -> int:
    return t.Offset(4 + 2 * slot)


def _sub(t: Table, slot: int) -> Table | None:
    o = _field(t, slot)
    return Table(t.Bytes, t.Indirect(o + t.Pos)) if o else None


def _str(t: Table, slot: int) -> str | None:
    o = _field(t, slot)
    return t.String(o + t.Pos).decode() if o else None


def _tables(t: Table, slot: int) -> list[Table]:
    o = _field(t, slot)
    if not o:
        return []
    start, n = t.Vector(o), t.VectorLen(o)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]


def _floats(t: Table, slot: int) -> list[float]:
    o = _field(t, slot)
    if not o:
        return []
    start = t.Vector(o)
    return [t.Get(flatbuffers.number_types.Float32Flags, start + 4 * i) for i in range(t.VectorLen(o))]


def read_metadata(model: bytes) -> dict:
    """The metadata as a dict (name, version, image_size, mean, std, label file) plus labels.txt."""
    from ai_edge_litert import schema_py_generated as schema

    tfl = schema.Model.GetRootAs(model, 0)
    raw = None
    for i in range(tfl.MetadataLength()):
        if tfl.Metadata(i).Name().decode() == METADATA_NAME:
            raw = tfl.Buffers(tfl.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    if raw is None:
        raise ValueError("the model has no TFLITE_METADATA")
    if raw[4:8] != FILE_ID:
        raise ValueError("TFLITE_METADATA is not a metadata_schema (M001) flatbuffer")
    root = Table(raw, flatbuffers.encode.Get(flatbuffers.packer.uoffset, raw, 0))
    subgraph = _tables(root, 3)[0]
    tin, tout = _tables(subgraph, 2)[0], _tables(subgraph, 3)[0]
    props = _sub(_sub(tin, 3), 1)
    size = _sub(props, 1)
    norm = _sub(_tables(tin, 4)[0], 1)
    labels_file = _tables(tout, 6)[0]
    with zipfile.ZipFile(io.BytesIO(model)) as zf:
        labels = zf.read(_str(labels_file, 0)).decode().splitlines()
    return {
        "name": _str(root, 0), "version": _str(root, 2), "min_parser_version": _str(root, 7),
        "input": _str(tin, 0), "output": _str(tout, 0),
        "image_size": (size.Get(flatbuffers.number_types.Uint32Flags, size.Pos + _field(size, 0)),
                       size.Get(flatbuffers.number_types.Uint32Flags, size.Pos + _field(size, 1))),
        "mean": _floats(norm, 0), "std": _floats(norm, 1),
        "labels_file": _str(labels_file, 0), "labels": labels,
    }
