"""Chunking: bodies are the input's own bytes, cut at line ends, within both caps, greedily."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import pytest

from jobman.chunking import Chunk, check_csv_file, iter_chunks, row_range
from jobman.errors import ConfigError

_LINE = re.compile(rb"[^\n]*\n|[^\n]+$")

pytestmark = pytest.mark.timeout(30)


def chunks_of(
    data: bytes, cap: int, max_rows: int | None = None, *, header: bool = False, block_size: int = 1 << 20
) -> list[Chunk]:
    return list(iter_chunks(io.BytesIO(data), cap, max_rows, header=header, block_size=block_size))


def bodies(data: bytes, cap: int, max_rows: int | None = None, **kw: object) -> list[bytes]:
    return [c.body for c in chunks_of(data, cap, max_rows, **kw)]  # type: ignore[arg-type]


def reference(data: bytes, cap: int, max_rows: int | None, header: bool) -> list[tuple[int, int, bytes]]:
    """Line-by-line greedy packing, written the obvious way; raises ValueError(row) where iter_chunks errs."""
    lines = _LINE.findall(data)
    if header:
        lines = lines[1:]
    while lines and lines[-1] in (b"\n", b"\r\n", b"\r"):
        lines.pop()
    out: list[tuple[int, int, bytes]] = []
    current: list[bytes] = []
    first = 1
    for row, line in enumerate(lines, 1):
        if line in (b"\n", b"\r\n", b"\r"):
            raise ValueError(f"blank line at data row {row}")
        if len(line) > cap:
            raise ValueError(f"row {row} ")
        if current and (len(b"".join(current)) + len(line) > cap or len(current) == max_rows):
            out.append((first, len(current), b"".join(current)))
            first, current = row, []
        current.append(line)
    if current:
        out.append((first, len(current), b"".join(current)))
    return out


def as_tuples(chunks: list[Chunk]) -> list[tuple[int, int, bytes]]:
    return [(c.first_row, c.rows, c.body) for c in chunks]


# --- boundaries -------------------------------------------------------------------------------


def test_one_chunk_when_everything_fits() -> None:
    [c] = chunks_of(b"1,2\n3,4\n5,6\n", 100)
    assert (c.index, c.first_row, c.rows, c.last_row, c.body) == (0, 1, 3, 3, b"1,2\n3,4\n5,6\n")
    assert c.label == "rows 1–3"


def test_row_cap_of_one() -> None:
    cs = chunks_of(b"a\nb\nc\n", 100, 1)
    assert as_tuples(cs) == [(1, 1, b"a\n"), (2, 1, b"b\n"), (3, 1, b"c\n")]
    assert [c.index for c in cs] == [0, 1, 2]
    assert cs[1].label == "row 2"


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (9, [b"aa\nbb\ncc\n"]),  # exact fit
        (8, [b"aa\nbb\n", b"cc\n"]),  # one byte short of all three
        (6, [b"aa\nbb\n", b"cc\n"]),  # exact fit of two
        (5, [b"aa\n", b"bb\n", b"cc\n"]),  # one byte short of two
        (3, [b"aa\n", b"bb\n", b"cc\n"]),  # exact fit of one
    ],
)
def test_byte_cap_boundaries(cap: int, expected: list[bytes]) -> None:
    assert bodies(b"aa\nbb\ncc\n", cap) == expected


def test_byte_cap_one_short_of_a_row_names_it() -> None:
    message = r"^row 1 is 3 bytes \(with its line end\), more than max_payload_bytes=2;"
    with pytest.raises(ConfigError, match=message):
        chunks_of(b"aa\nbb\n", 2)


def test_both_caps_the_tighter_wins() -> None:
    data = b"1\n22\n333\n4444\n"
    assert bodies(data, 7, 2) == [b"1\n22\n", b"333\n", b"4444\n"]
    assert bodies(data, 100, 3) == [b"1\n22\n333\n", b"4444\n"]


def test_last_line_without_newline_is_sent_as_is() -> None:
    assert bodies(b"1\n2", 100) == [b"1\n2"]
    assert bodies(b"1\n2", 3) == [b"1\n2"]  # exact fit including the unterminated row
    assert bodies(b"1\n2", 2) == [b"1\n", b"2"]
    assert bodies(b"12345", 5) == [b"12345"]
    assert [c.rows for c in chunks_of(b"1\n2\n3", 100, 2)] == [2, 1]


def test_unterminated_last_row_over_the_cap() -> None:
    with pytest.raises(ConfigError, match=r"^row 2 is 6 bytes"):
        chunks_of(b"1\n123456", 5)


def test_crlf_kept_byte_for_byte() -> None:
    data = b"1,2\r\n3,4\r\n5,6\r\n"
    assert bodies(data, 100) == [data]
    assert bodies(data, 10) == [b"1,2\r\n3,4\r\n", b"5,6\r\n"]
    assert bodies(data, 9) == [b"1,2\r\n", b"3,4\r\n", b"5,6\r\n"]


def test_header_is_skipped_and_rows_count_from_the_first_data_line() -> None:
    cs = chunks_of(b"x,y\n1,2\n3,4\n", 100, 1, header=True)
    assert as_tuples(cs) == [(1, 1, b"1,2\n"), (2, 1, b"3,4\n")]
    assert bodies(b"x,y\r\n1,2\r\n", 100, header=True) == [b"1,2\r\n"]


@pytest.mark.parametrize("data", [b"", b"x,y", b"x,y\n", b"x,y\n\n\r\n"])
def test_header_only_has_no_chunks(data: bytes) -> None:
    assert chunks_of(data, 100, header=True) == []


@pytest.mark.parametrize("data", [b"", b"\n", b"\r\n", b"\n\n\n", b"\r"])
def test_no_rows(data: bytes) -> None:
    assert chunks_of(data, 100) == []


def test_long_header_spanning_blocks() -> None:
    data = b"h" * 50 + b"\n1\n2\n"
    assert bodies(data, 100, header=True, block_size=4) == [b"1\n2\n"]


# --- errors -----------------------------------------------------------------------------------


def test_oversized_row_named_with_its_size() -> None:
    data = b"1\n2\n" + b"9" * 20 + b"\n4\n"
    with pytest.raises(ConfigError) as err:
        chunks_of(data, 10)
    assert str(err.value) == (
        "row 3 is 21 bytes (with its line end), more than max_payload_bytes=10; it cannot be sent in one request"
    )


def test_oversized_row_with_header_names_the_file_line_too() -> None:
    with pytest.raises(ConfigError, match=r"^row 2 \(line 3 of the file\) is 21 bytes"):
        chunks_of(b"h\n1\n" + b"9" * 20 + b"\n", 10, header=True)


def test_oversized_row_measured_past_the_buffer() -> None:
    # The row is 100x the cap and spans many reads; its size is still reported exactly.
    data = b"1\n" + b"x" * 999 + b"\n2\n"
    with pytest.raises(ConfigError, match=r"^row 2 is 1000 bytes"):
        chunks_of(data, 10, block_size=7)


def test_trailing_blank_lines_are_ignored() -> None:
    assert bodies(b"1\n2\n\n\n", 100) == [b"1\n2\n"]
    assert bodies(b"1\r\n2\r\n\r\n\r\n", 100) == [b"1\r\n2\r\n"]
    assert bodies(b"1\n2\n\r", 100) == [b"1\n2\n"]
    assert [c.rows for c in chunks_of(b"1\n2\n\n\n", 100)] == [2]
    # Many blank lines across many reads and chunks.
    assert bodies(b"1\n2\n" + b"\n" * 1000, 3, block_size=5) == [b"1\n", b"2\n"]
    assert bodies(b"1\n2\n" + b"\n" * 1000, 100, 1, block_size=5) == [b"1\n", b"2\n"]


@pytest.mark.parametrize(
    ("data", "row"),
    [
        (b"1\n\n3\n", 2),
        (b"\n2\n", 1),
        (b"1\r\n\r\n3\r\n", 2),
        (b"1\n2\n" + b"\n" * 100 + b"x", 3),
        (b"1\n\n\r\r\n", 2),  # b"\r\r" is a line of data, so the blank line before it is inside
    ],
)
def test_blank_line_inside_is_an_error_naming_its_row(data: bytes, row: int) -> None:
    with pytest.raises(ConfigError, match=rf"^blank line at data row {row}$"):
        chunks_of(data, 100, block_size=3)


def test_blank_line_after_header_names_the_file_line() -> None:
    with pytest.raises(ConfigError, match=r"^blank line at data row 2 \(line 3 of the file\)$"):
        chunks_of(b"h\n1\n\n3\n", 100, header=True)


def test_a_line_of_spaces_is_data() -> None:
    assert bodies(b"1\n \n", 100) == [b"1\n \n"]


def test_bad_caps() -> None:
    with pytest.raises(ConfigError):
        chunks_of(b"1\n", 0)
    with pytest.raises(ConfigError):
        chunks_of(b"1\n", 10, 0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"1,2\n3\x004\n", "a NUL byte at offset 5"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a NUL byte at offset 8"),
        ("id,ville\n1,Orl\u00e9ans\n".encode("latin-1"), "byte 0xe9 at offset 14 is not UTF-8"),
        (b"\xff\xfe1\x002\x00", "a NUL byte at offset 3"),  # UTF-16
    ],
)
def test_input_that_is_not_text_is_refused_before_any_chunk(data: bytes, reason: str) -> None:
    for header in (False, True):
        chunks = iter_chunks(io.BytesIO(data), 100, header=header, source="in.csv")
        with pytest.raises(ConfigError) as err:
            next(chunks)
        assert str(err.value) == f"in.csv is not text CSV ({reason})"


def test_utf8_text_is_csv_even_cut_mid_character_by_the_first_block() -> None:
    data = "id,ville\n1,Orl\u00e9ans\n2,K\u00f6ln \u2603\n".encode()
    cut = data.index("\u00e9".encode()) + 1  # the first block ends inside a two-byte character
    assert bodies(data, 100, 1, header=True, block_size=cut) == [b"1,Orl\xc3\xa9ans\n", "2,K\u00f6ln \u2603\n".encode()]


def test_only_the_first_block_is_checked() -> None:
    # Reading stays a copy: a NUL past the first block is the endpoint's to refuse.
    assert bodies(b"1\n2\x00\n", 100, block_size=2) == [b"1\n2\x00\n"]


def test_check_csv_file(tmp_path: Path) -> None:
    text, binary = tmp_path / "ok.csv", tmp_path / "model.bin"
    text.write_bytes(b"1,2\n")
    binary.write_bytes(b"xgb\x00\x01")
    check_csv_file(str(text))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(binary))} is not text CSV \(a NUL byte at offset 3\)$"):
        check_csv_file(str(binary))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path / 'nope.csv'))}: no such file$"):
        check_csv_file(str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: is a directory, not a CSV file$"):
        check_csv_file(str(tmp_path))


def test_row_range() -> None:
    assert row_range(7, 1) == "row 7"
    assert row_range(1001, 1000) == "rows 1001–2000"


# --- incremental reading ----------------------------------------------------------------------


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(-1 if size is None else size)
        return super().read(size)


def test_reads_in_blocks_and_never_all_at_once() -> None:
    data = b"".join(b"%d,%d\n" % (i, i * 7) for i in range(200_000))
    src = CountingReader(data)
    it = iter_chunks(src, 100_000, block_size=64 * 1024)
    first = next(it)
    assert first.first_row == 1 and len(first.body) <= 100_000
    assert src.tell() <= 100_000 + 64 * 1024  # one payload plus one block
    assert -1 not in src.reads
    assert b"".join([first.body, *(c.body for c in it)]) == data


def test_small_row_cap_does_not_reread_the_buffer() -> None:
    # 100k one-row chunks with a 5 MB byte cap: each cut must cost O(row), not O(cap).
    data = b"".join(b"%d\n" % i for i in range(100_000))
    cs = chunks_of(data, 5_000_000, 1)
    assert len(cs) == 100_000 and cs[-1].body == b"99999\n" and cs[-1].first_row == 100_000


# --- random inputs against the reference ------------------------------------------------------


def random_csv(rng: random.Random) -> bytes:
    n = rng.choice([0, 1, 2, 3, rng.randint(4, 60)])
    eol = rng.choice([b"\n", b"\r\n"])
    lines = [b"x" * rng.randint(0, 12) + b"," + bytes([48 + rng.randint(0, 9)]) for _ in range(n)]
    data = b"".join(line + eol for line in lines)
    if data and rng.random() < 0.3:
        data = data[: -len(eol)]  # no line end after the last row
    if rng.random() < 0.2:
        data += eol * rng.randint(1, 5)  # trailing blank lines
    for _ in range(rng.choice([0, 0, 0, 1, 3])):  # stray line ends: blank lines, b"\r\r\n", ...
        i = rng.randint(0, len(data))
        data = data[:i] + rng.choice([b"\n", b"\r\n", b"\r", b"\n\n"]) + data[i:]
    return data


@pytest.mark.parametrize("seed", range(8))
def test_random_inputs_match_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(250):
        data = random_csv(rng)
        header = rng.random() < 0.3
        cap = rng.randint(1, max(1, len(data) + 2))
        max_rows = rng.choice([None, 1, 2, rng.randint(1, 20)])
        block_size = rng.choice([1, 2, 3, 7, 64, 1 << 20])
        try:
            expected = reference(data, cap, max_rows, header)
        except ValueError as e:
            with pytest.raises(ConfigError, match="^" + re.escape(str(e))):
                chunks_of(data, cap, max_rows, header=header, block_size=block_size)
            continue
        got = chunks_of(data, cap, max_rows, header=header, block_size=block_size)
        assert as_tuples(got) == expected, (data, cap, max_rows, header, block_size)
        assert [c.index for c in got] == list(range(len(got)))
