"""The CBOR subset (RFC 8949) that the Smithy RPC v2 CBOR protocol uses: botocore >= 1.42 speaks it to CloudWatch.

Decodes every major type (definite and indefinite lengths, half/single/double floats, tags: tag 1
timestamps become epoch seconds); encodes None, bool, int, float, str, bytes, list, dict and
`Timestamp` (tag 1 around a float), which is all an answer needs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64


class CborError(ValueError):
    pass


@dataclass(frozen=True)
class Timestamp:
    epoch: float


def dumps(value: Any) -> bytes:
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _head(major: int, length: int, out: bytearray) -> None:
    if length < 24:
        out.append(major << 5 | length)
    elif length < 1 << 8:
        out += bytes((major << 5 | 24, length))
    elif length < 1 << 16:
        out += bytes((major << 5 | 25,)) + struct.pack(">H", length)
    elif length < 1 << 32:
        out += bytes((major << 5 | 26,)) + struct.pack(">I", length)
    else:
        out += bytes((major << 5 | 27,)) + struct.pack(">Q", length)


def _encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0xF6)
    elif value is True or value is False:
        out.append(0xF5 if value else 0xF4)
    elif isinstance(value, int) and value >= 0:
        _head(0, value, out)
    elif isinstance(value, int):
        _head(1, -1 - value, out)
    elif isinstance(value, float):
        out += b"\xfb" + struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode()
        _head(3, len(raw), out)
        out += raw
    elif isinstance(value, bytes | bytearray):
        _head(2, len(value), out)
        out += value
    elif isinstance(value, Timestamp):
        _head(6, 1, out)
        _encode(float(value.epoch), out)
    elif isinstance(value, list | tuple):
        _head(4, len(value), out)
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        _head(5, len(value), out)
        for key, item in value.items():
            _encode(str(key), out)
            _encode(item, out)
    else:
        raise CborError(f"cannot encode {type(value).__name__}")


def loads(data: bytes) -> Any:
    if not data:
        return {}
    value, end = _Decoder(data).item(0, 0)
    if value is _BREAK:
        raise CborError("unexpected break")
    if end != len(data):
        raise CborError("trailing bytes after the CBOR item")
    return value


_BREAK = object()


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def _take(self, at: int, size: int) -> bytes:
        if at + size > len(self.data):
            raise CborError("truncated CBOR")
        return self.data[at:at + size]

    def _length(self, info: int, at: int) -> tuple[int | None, int]:
        if info < 24:
            return info, at
        sizes = {24: 1, 25: 2, 26: 4, 27: 8}
        if info in sizes:
            return int.from_bytes(self._take(at, sizes[info]), "big"), at + sizes[info]
        if info == 31:
            return None, at  # indefinite length
        raise CborError(f"invalid additional information {info}")

    def item(self, at: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise CborError("CBOR nested too deeply")
        initial = self._take(at, 1)[0]
        major, info = initial >> 5, initial & 0x1F
        at += 1
        if major == 7:
            return self._simple(info, at)
        length, at = self._length(info, at)
        if major in (0, 1):
            if length is None:
                raise CborError("an integer cannot have indefinite length")
            return (length if major == 0 else -1 - length), at
        if major in (2, 3):
            return self._string(major, length, at, depth)
        if major == 4:
            items: list[Any] = []
            while length is None or len(items) < length:
                value, at = self.item(at, depth + 1)
                if value is _BREAK:
                    if length is None:
                        break
                    raise CborError("unexpected break")
                items.append(value)
            return items, at
        if major == 5:
            mapping: dict[Any, Any] = {}
            while length is None or len(mapping) < length:
                key, at = self.item(at, depth + 1)
                if key is _BREAK:
                    if length is None:
                        break
                    raise CborError("unexpected break")
                value, at = self.item(at, depth + 1)
                if value is _BREAK or isinstance(key, list | dict):
                    raise CborError("a map needs a hashable key and a value for each key")
                mapping[key] = value
            return mapping, at
        tagged, at = self.item(at, depth + 1)  # major 6: a tag; tag 1 is epoch seconds, which we keep as a number
        return tagged, at

    def _string(self, major: int, length: int | None, at: int, depth: int) -> tuple[Any, int]:
        if length is not None:
            raw = self._take(at, length)
            at += length
        else:
            chunks = []
            while True:
                chunk, at = self.item(at, depth + 1)
                if chunk is _BREAK:
                    break
                if not isinstance(chunk, str | bytes):
                    raise CborError("an indefinite-length string holds only strings")
                chunks.append(chunk.encode() if isinstance(chunk, str) else chunk)
            raw = b"".join(chunks)
        if major == 2:
            return raw, at
        try:
            return raw.decode(), at
        except UnicodeDecodeError as exc:
            raise CborError("a text string is not UTF-8") from exc

    def _simple(self, info: int, at: int) -> tuple[Any, int]:
        if info == 20:
            return False, at
        if info == 21:
            return True, at
        if info in (22, 23):
            return None, at
        if info == 25:
            return struct.unpack(">e", self._take(at, 2))[0], at + 2
        if info == 26:
            return struct.unpack(">f", self._take(at, 4))[0], at + 4
        if info == 27:
            return struct.unpack(">d", self._take(at, 8))[0], at + 8
        if info == 31:
            return _BREAK, at
        raise CborError(f"unsupported simple value {info}")
