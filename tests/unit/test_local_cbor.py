"""The CBOR codec of the Smithy RPC v2 CBOR protocol (botocore itself talks to it in test_local_metrics_wire)."""

from __future__ import annotations

import pytest

from jobman.backends.local import cbor


def test_round_trip() -> None:
    value = {"a": [1, -2, 1.5, "x", b"\x00", None, True, False], "big": 1 << 40, "neg": -(1 << 33), "m": {}}
    assert cbor.loads(cbor.dumps(value)) == value
    assert cbor.dumps(cbor.Timestamp(1.5)) == b"\xc1\xfb" + bytes.fromhex("3ff8000000000000")


def test_indefinite_lengths_half_floats_and_tags() -> None:
    # {_ "a": [_ 1, 2], "s": (_ "ab" "c")} with a half float 1.5 and a tag-1 timestamp
    data = bytes([0xBF, 0x61, 0x61, 0x9F, 0x01, 0x02, 0xFF, 0x61, 0x73, 0x7F, 0x62, 0x61, 0x62, 0x61, 0x63, 0xFF,
                  0x61, 0x68, 0xF9, 0x3E, 0x00, 0x61, 0x74, 0xC1, 0x1A, 0x00, 0x00, 0x00, 0x10, 0xFF])
    assert cbor.loads(data) == {"a": [1, 2], "s": "abc", "h": 1.5, "t": 16}
    assert cbor.loads(b"") == {}


@pytest.mark.parametrize("bad", [b"\x62a", b"\x01\x02", b"\xff", b"\x1c", b"\x81" * 100 + b"\x00", b"\xa1\x01\xff",
                                 b"\x7f\x01\xff"])
def test_malformed_input_is_refused(bad: bytes) -> None:
    with pytest.raises(cbor.CborError):
        cbor.loads(bad)
