"""Read TensorFlow 1 checkpoints (``V2`` bundle format) without TensorFlow.

Why: the pretrained musicnn weights ship on PyPI only as TF1 checkpoints, and
TensorFlow is a ~600 MB dependency we never need at run time.  A checkpoint is

* ``<prefix>.index``: a LevelDB-style SSTable (uncompressed blocks, prefix
  compressed keys, a 48-byte footer) mapping each variable name to a
  ``BundleEntryProto`` (dtype, shape, shard, offset, size, masked crc32c); the
  entry with the empty key is the ``BundleHeaderProto``;
* ``<prefix>.data-00000-of-0000N``: the raw little-endian tensor bytes.

Only the few protobuf fields we need are decoded, by hand, so there is no
``protobuf`` dependency either.  Every size, offset and checksum is validated so a
truncated or corrupted download fails loudly (:class:`~engine.errors.ModelError`)
instead of producing a silently wrong model.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ModelError

log = logging.getLogger(__name__)

__all__ = ["TensorEntry", "crc32c", "list_variables", "read_checkpoint"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5  # 1 byte compression type + 4 bytes masked crc32c
_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto DataType -> numpy little-endian dtype
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


# --------------------------------------------------------------------------- crc32c


def _make_crc_table() -> np.ndarray:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = _make_crc_table()
_CRC_TABLE_PY: list[int] = [int(v) for v in _CRC_TABLE]


def _crc_update_py(state: int, data: bytes | memoryview) -> int:
    table = _CRC_TABLE_PY
    for b in bytes(data):
        state = table[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


def _advance_columns(n_bytes: int) -> list[int]:
    """Images of the 32 unit states after feeding ``n_bytes`` zero bytes (a GF(2) matrix)."""
    states = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    for _ in range(n_bytes):
        states = _CRC_TABLE[states & 0xFF] ^ (states >> np.uint32(8))
    return [int(v) for v in states]


def _apply(columns: list[int], state: int) -> int:
    out = 0
    bit = 0
    while state:
        if state & 1:
            out ^= columns[bit]
        state >>= 1
        bit += 1
    return out


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of ``data``, as TensorFlow's ``crc32c::Value``.

    Why vectorised: a byte-at-a-time Python loop takes seconds on the 9 MB
    musicnn checkpoint.  The CRC register update is linear over GF(2), so the
    buffer is cut into ``K`` equal chunks whose raw CRCs are computed side by side
    with numpy (one table lookup per column), then combined with Horner's rule
    using the "advance by L zero bytes" matrix.
    """
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    n = buf.size
    state = 0xFFFFFFFF
    if n < 8192:
        return _crc_update_py(state, buf.tobytes()) ^ 0xFFFFFFFF
    chunk = max(256, int(np.sqrt(n)))
    k = n // chunk
    body = buf[: k * chunk].reshape(k, chunk)
    raw = np.zeros(k, dtype=np.uint32)
    for j in range(chunk):
        raw = _CRC_TABLE[(raw ^ body[:, j]) & 0xFF] ^ (raw >> np.uint32(8))
    cols = _advance_columns(chunk)
    for r in raw.tolist():
        state = _apply(cols, state) ^ r
    state = _crc_update_py(state, buf[k * chunk :].tobytes())
    return state ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------- protobuf bits


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """Yield ``(field_number, wire_type, value)``; value is int for varint/fixed, bytes for len."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise ValueError("truncated fixed64")
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise ValueError("truncated fixed32")
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class TensorEntry:
    """One ``BundleEntryProto``: where a variable's bytes are and what they are."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c_masked: int | None
    sliced: bool


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for field, _wire, value in _fields(buf):
        if field == 2:  # repeated Dim
            size = 0
            for f2, _w2, v2 in _fields(value):
                if f2 == 1:
                    size = _signed64(v2)
            dims.append(size)
        elif field == 3 and value:
            raise ValueError("tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    dtype = 0
    shape: tuple[int, ...] = ()
    shard = offset = size = 0
    crc: int | None = None
    sliced = False
    for field, _wire, value in _fields(buf):
        if field == 1:
            dtype = value
        elif field == 2:
            shape = _parse_shape(value)
        elif field == 3:
            shard = value
        elif field == 4:
            offset = _signed64(value)
        elif field == 5:
            size = _signed64(value)
        elif field == 6:
            crc = value
        elif field == 7:
            sliced = True
    return TensorEntry(name, dtype, shape, shard, offset, size, crc, sliced)


# --------------------------------------------------------------------------- SSTable


def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size + _BLOCK_TRAILER_LEN
    if offset < 0 or end > len(data):
        raise ValueError(f"{what} block [{offset}, {end}) lies outside the {len(data)}-byte index")
    block = data[offset : offset + size]
    ctype = data[offset + size]
    if ctype != 0:
        raise ValueError(
            f"{what} block uses compression type {ctype}; only uncompressed is supported"
        )
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    actual = crc32c(data[offset : offset + size + 1])
    if _unmask(stored) != actual:
        raise ValueError(f"{what} block checksum mismatch")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise ValueError("block too short")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise ValueError("bad restart count")
    entries: list[tuple[bytes, bytes]] = []
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise ValueError("corrupt block entry")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _read_index(index_path: Path) -> tuple[dict[str, TensorEntry], int]:
    data = index_path.read_bytes()
    if len(data) < _FOOTER_LEN:
        raise ValueError(f"index is {len(data)} bytes, shorter than the footer")
    footer = data[-_FOOTER_LEN:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)
    if magic != _TABLE_MAGIC:
        raise ValueError("bad table magic (not a TF checkpoint index, or truncated)")
    _meta_off, pos = _varint(footer, 0)
    _meta_size, pos = _varint(footer, pos)
    idx_off, pos = _varint(footer, pos)
    idx_size, pos = _varint(footer, pos)
    index_block = _read_block(data, idx_off, idx_size, "index")
    entries: dict[str, TensorEntry] = {}
    num_shards = 1
    for _last_key, handle in _block_entries(index_block):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        for key, value in _block_entries(_read_block(data, off, size, "data")):
            if key == b"":  # BundleHeaderProto
                for field, _w, v in _fields(value):
                    if field == 1:
                        num_shards = v
                    elif field == 2 and v != 0:
                        raise ValueError("big-endian checkpoints are not supported")
                continue
            name = key.decode("utf-8")
            entries[name] = _parse_entry(name, value)
    return entries, num_shards


def _index_path(prefix: Path) -> Path:
    """``prefix`` may be a directory: musicnn's checkpoints use the empty file prefix
    (``MSD_musicnn/.index``), which ``Path`` cannot express with a trailing slash."""
    prefix = Path(prefix)
    if prefix.is_dir():
        return prefix / ".index"
    return prefix.with_name(prefix.name + ".index")


def _data_path(index_path: Path, shard: int, num_shards: int) -> Path:
    stem = index_path.name[: -len(".index")]
    return index_path.with_name(f"{stem}.data-{shard:05d}-of-{num_shards:05d}")


def _load_index(index_path: Path) -> tuple[dict[str, TensorEntry], int]:
    try:
        return _read_index(index_path)
    except FileNotFoundError as exc:
        raise ModelError(f"checkpoint index {index_path} not found") from exc
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ModelError(f"checkpoint index {index_path} is corrupt: {exc}") from exc


def list_variables(prefix: Path) -> dict[str, TensorEntry]:
    """Entries of the checkpoint's index (names, dtypes, shapes) without reading data."""
    return _load_index(_index_path(prefix))[0]


def read_checkpoint(
    prefix: Path, *, verify_crc: bool = True, skip_optimizer_slots: bool = True
) -> dict[str, np.ndarray]:
    """All variables of the TF checkpoint at ``prefix`` as numpy arrays (writable copies).

    ``prefix`` is what TensorFlow calls the checkpoint prefix (``dir/model.ckpt``)
    or a directory holding ``.index`` (the empty prefix).  Adam slots
    (``*/Adam``, ``*/Adam_1``) and the ``beta*_power`` accumulators are skipped
    unless ``skip_optimizer_slots`` is false, since inference never needs them.

    Raises :class:`~engine.errors.ModelError` when a file is missing, truncated,
    or fails a size or crc32c check.
    """
    index_path = _index_path(prefix)
    entries, num_shards = _load_index(index_path)

    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name in sorted(entries):
        entry = entries[name]
        if skip_optimizer_slots and _is_optimizer_slot(name):
            continue
        if entry.sliced:
            raise ModelError(f"checkpoint variable {name} is partitioned; not supported")
        dtype = _DTYPES.get(entry.dtype)
        if dtype is None:
            raise ModelError(f"checkpoint variable {name} has unsupported dtype enum {entry.dtype}")
        if any(d < 0 for d in entry.shape):
            raise ModelError(f"checkpoint variable {name} has a negative dimension {entry.shape}")
        expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if entry.size != expected:
            raise ModelError(
                f"checkpoint variable {name}: {entry.size} bytes recorded, "
                f"{expected} expected for {dtype} {entry.shape}"
            )
        if entry.shard_id not in shards:
            data_path = _data_path(index_path, entry.shard_id, num_shards)
            try:
                shards[entry.shard_id] = data_path.read_bytes()
            except FileNotFoundError as exc:
                raise ModelError(f"checkpoint data file {data_path} not found") from exc
        blob = shards[entry.shard_id]
        if entry.offset < 0 or entry.offset + entry.size > len(blob):
            raise ModelError(
                f"checkpoint variable {name} at [{entry.offset}, {entry.offset + entry.size}) "
                f"lies outside the {len(blob)}-byte data file (truncated?)"
            )
        raw = memoryview(blob)[entry.offset : entry.offset + entry.size]
        if (
            verify_crc
            and entry.crc32c_masked is not None
            and crc32c(raw) != _unmask(entry.crc32c_masked)
        ):
            raise ModelError(f"checkpoint variable {name} fails its crc32c check (corrupt data)")
        out[name] = (
            np.frombuffer(raw, dtype=dtype)
            .reshape(entry.shape)
            .astype(dtype.newbyteorder("="), copy=True)
        )
    log.debug("read %d variables from checkpoint %s", len(out), index_path)
    return out


def _is_optimizer_slot(name: str) -> bool:
    last = name.rsplit("/", 1)[-1]
    if last in ("Adam", "Adam_1", "Momentum", "RMSProp", "RMSProp_1"):
        return True
    return "/" not in name and name.endswith("_power")  # beta1_power, beta2_power
