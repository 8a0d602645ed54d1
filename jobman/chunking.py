r"""Cut a CSV byte stream into request bodies at the original line ends.

Bodies are slices of the input bytes, never re-serialised (pandas' to_csv is ~400x slower than
slicing). Each body holds whole lines, at most `max_payload_bytes` bytes and at most
`max_rows_per_chunk` rows; chunks are packed greedily (each is as large as the caps allow).

Line rules:
- A line ends at b"\n"; a b"\r" before it stays in the body (servers read CRLF CSV).
- The last line may lack its b"\n"; it is sent as it is.
- A blank line is b"" or b"\r" (a line of spaces is data). Blank lines at the end of the input
  are ignored. A blank line followed by any data is a ConfigError naming its row: a server
  would skip it or fail on it, and either way the predictions would no longer line up with
  the file's rows.
- With `header=True` the first line is skipped and never sent.
- The first block must be text: no NUL byte, valid UTF-8 (a character cut by the block's end aside).
  Anything else is a ConfigError saying the input is not text CSV, before a chunk is cut; later
  blocks are not checked, so that reading stays a memcpy.

Memory stays about 2 x max_payload_bytes + block_size, plus 8 bytes a row for the line index:
the input is read in blocks and only its unsent tail is kept.
"""

from __future__ import annotations

import codecs
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from jobman.errors import ConfigError

BLOCK_SIZE = 1 << 20  # 1 MiB reads: few syscalls, small memory
_LF, _CR = 0x0A, 0x0D


@dataclass(frozen=True)
class Chunk:
    index: int  # 0-based position in the stream
    first_row: int  # 1-based data row number (the header is not counted)
    rows: int
    body: bytes

    @property
    def last_row(self) -> int:
        return self.first_row + self.rows - 1

    @property
    def label(self) -> str:
        return row_range(self.first_row, self.rows)


def row_range(first_row: int, rows: int) -> str:
    """'row 7' or 'rows 1001–2000', as error messages name them."""
    return f"row {first_row}" if rows == 1 else f"rows {first_row}–{first_row + rows - 1}"


def check_text(head: bytes, source: str) -> None:
    """ConfigError unless `head`, the input's first bytes, looks like text: no NUL byte, and UTF-8.

    Binary input would otherwise fail far from its cause (a "blank line" at some row, or a ModelError).
    """
    nul = head.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"{source} is not text CSV (a NUL byte at offset {nul})")
    if not head.isascii():
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head)  # not final: a character may go on past `head`
        except UnicodeDecodeError as e:
            raise ConfigError(f"{source} is not text CSV (byte 0x{head[e.start]:02x} at offset {e.start} "
                              f"is not UTF-8)") from None


def check_csv_file(path: str) -> None:
    """What can be known of an input file before anything is sent: it is a readable file, and starts as text."""
    if Path(path).is_dir():
        raise ConfigError(f"{path}: is a directory, not a CSV file")
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        with open(path, "rb") as src:
            head = src.read(BLOCK_SIZE)
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
    check_text(head, path)


class _Buffer:
    """The unsent tail of the input, `data[pos:]`, refilled from `src` in blocks, with a line index.

    The index (where each line feed is, where each blank line starts) is rebuilt with numpy on
    every refill, one vectorised pass over the held bytes. Cutting a chunk is then a few lookups
    whatever its size; a Python loop over rows, or `bytes.find` of a 2-byte pattern, costs 5-10x
    more per byte.
    """

    def __init__(self, src: BinaryIO, block_size: int, source: str) -> None:
        self.src = src
        self.block_size = block_size
        self.source = source  # how error messages name the input
        self.started = False  # whether the first block has been read (and checked)
        self.data = b""
        self.pos = 0
        self.lf_before_pos = 0  # line feeds in data[:pos], kept in step with pos
        self.eof = False
        self._index()

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def read_more(self, at_least: int) -> None:
        """Append blocks until `at_least` more bytes are held or the input ends; join once."""
        parts = [self.data[self.pos :]]
        got = 0
        while got < at_least:
            block = self.src.read(self.block_size)
            if not block:
                self.eof = True
                break
            if not self.started:
                check_text(block, self.source)
                self.started = True
            parts.append(block)
            got += len(block)
        self.data = b"".join(parts)
        self.pos = self.lf_before_pos = 0
        self._index()

    def _index(self) -> None:
        raw = np.frombuffer(self.data, np.uint8)
        self.lfs = np.flatnonzero(raw == _LF)
        # The line between two line feeds is blank when it is empty or a lone carriage return.
        gaps = np.diff(self.lfs)
        after_cr = raw[self.lfs[1:] - 1] == _CR
        self.blank_starts = self.lfs[:-1][(gaps == 1) | ((gaps == 2) & after_cr)] + 1

    def lf_count_before(self, i: int) -> int:
        """How many line feeds are in data[:i]."""
        return int(np.searchsorted(self.lfs, i))

    def lf_at(self, k: int) -> int:
        """Index in data of the k-th line feed (from 0), or -1 if there are not that many."""
        return int(self.lfs[k]) if 0 <= k < len(self.lfs) else -1


def iter_chunks(
    src: BinaryIO,
    max_payload_bytes: int,
    max_rows_per_chunk: int | None = None,
    *,
    header: bool = False,
    block_size: int = BLOCK_SIZE,
    source: str = "input",
) -> Generator[Chunk, None, None]:
    """Yield chunks of `src` in order; raise ConfigError for input that is not text, an oversized row or a
    blank line inside. `source` names the input in the first of these messages."""
    if max_payload_bytes < 1:
        raise ConfigError(f"max_payload_bytes must be at least 1, not {max_payload_bytes}")
    if max_rows_per_chunk is not None and max_rows_per_chunk < 1:
        raise ConfigError(f"max_rows_per_chunk must be at least 1, not {max_rows_per_chunk}")
    buf = _Buffer(src, block_size, source)
    if header:
        _skip_header(buf)
    line_offset = 1 if header else 0  # file line = data row + line_offset
    next_row, index, last = 1, 0, False
    while not last:
        _fill_until_decidable(buf, max_payload_bytes, max_rows_per_chunk)
        if buf.remaining == 0:
            return
        # A blank line first: it may be longer than a tiny cap, and it is not a row to size.
        if _blank_line_at_pos(buf):
            blank = buf.pos
        else:
            end, lf_before_end = _cut(buf, max_payload_bytes, max_rows_per_chunk, next_row, line_offset)
            blank = _first_blank_line(buf, end)
        if blank >= 0:
            if not _only_blank_lines_follow(buf, blank):
                row = next_row + buf.lf_count_before(blank) - buf.lf_before_pos
                raise ConfigError(f"blank line at data row {row}{_file_line(row, line_offset)}")
            if blank == buf.pos:
                return
            # The rest of the input is blank lines: the data ends where they start.
            end, lf_before_end, last = blank, buf.lf_count_before(blank), True
        rows = lf_before_end - buf.lf_before_pos + (buf.data[end - 1] != _LF)  # + an unterminated last line
        yield Chunk(index, next_row, rows, buf.data[buf.pos : end])
        buf.pos, buf.lf_before_pos = end, lf_before_end
        next_row += rows
        index += 1


def _file_line(row: int, line_offset: int) -> str:
    return f" (line {row + line_offset} of the file)" if line_offset else ""


def _skip_header(buf: _Buffer) -> None:
    while True:
        lf = buf.data.find(b"\n", buf.pos)
        if lf >= 0:
            buf.pos = lf + 1
            buf.lf_before_pos = buf.lf_count_before(buf.pos)
            return
        if buf.eof:
            buf.pos = len(buf.data)  # a header and no data
            return
        buf.read_more(buf.block_size)


def _fill_until_decidable(buf: _Buffer, cap: int, max_rows: int | None) -> None:
    """Read until the next cut cannot change with more input.

    That is when more than `cap` bytes are held (with exactly `cap`, an unterminated last
    line could still fit if the input ends there), the row cap is reached inside what is
    held, or the input has ended. Checking rows first keeps one-row chunks from refilling a
    whole payload's worth of buffer for every chunk.
    """
    while not buf.eof and buf.remaining <= cap:
        if max_rows is not None and len(buf.lfs) - buf.lf_before_pos >= max_rows:
            return
        # Without a row cap, read all that is missing at once (one join and index, not one per block).
        buf.read_more(1 if max_rows is not None else cap + 1 - buf.remaining)


def _cut(buf: _Buffer, cap: int, max_rows: int | None, next_row: int, line_offset: int) -> tuple[int, int]:
    """End (exclusive) of the largest body from buf.pos within both caps, and the line feeds before it."""
    pos, k = buf.pos, buf.lf_before_pos
    if max_rows is not None:
        nth = buf.lf_at(k + max_rows - 1)
        if 0 <= nth and nth + 1 - pos <= cap:  # max_rows rows fit: the row cap decides
            return nth + 1, k + max_rows
    if buf.eof and buf.remaining <= cap:
        return len(buf.data), len(buf.lfs)  # the rest fits, with a last line without a line feed
    j = buf.lf_count_before(pos + cap) - 1  # the last line feed inside the byte cap
    if j < k:
        raise ConfigError(
            f"row {next_row}{_file_line(next_row, line_offset)} is {_line_size(buf)} bytes "
            f"(with its line end), more than max_payload_bytes={cap}; it cannot be sent in one request"
        )
    return buf.lf_at(j) + 1, j + 1


def _line_size(buf: _Buffer) -> int:
    """Size of the line at buf.pos, reading on (and discarding) until its end, for the error message."""
    lf = buf.data.find(b"\n", buf.pos)
    if lf >= 0:
        return lf + 1 - buf.pos
    size = buf.remaining
    while block := buf.src.read(buf.block_size):
        lf = block.find(b"\n")
        if lf >= 0:
            return size + lf + 1
        size += len(block)
    return size


def _blank_line_at_pos(buf: _Buffer) -> bool:
    data, pos = buf.data, buf.pos
    return data.startswith((b"\n", b"\r\n"), pos) or (buf.eof and data[pos:] == b"\r")


def _first_blank_line(buf: _Buffer, end: int) -> int:
    """Start of the first blank line in data[pos:end] after its first line, or -1."""
    starts = buf.blank_starts
    if len(starts):
        i = int(np.searchsorted(starts, buf.pos, side="right"))
        if i < len(starts) and starts[i] < end:
            return int(starts[i])
    # A lone carriage return as the unterminated last line (indexed blank lines end in a line feed).
    data = buf.data
    if end == len(data) and buf.eof and end - 1 > buf.pos and data[end - 2 :] == b"\n\r":
        return end - 1
    return -1


def _only_blank_lines_follow(buf: _Buffer, start: int) -> bool:
    r"""True if data[start:] and everything unread are blank lines; reads to the end to know.

    Only b"\n" and b"\r\n" line ends count (plus a last b"\r"): b"\r\r\n" is a line of data,
    as it is inside the input. A b"\r" ending a block waits for the next block's first byte.
    """
    text = buf.data[start:]
    while True:
        block = buf.src.read(buf.block_size)
        carry = b"\r" if text.endswith(b"\r") else b""  # half a b"\r\n", or a blank last line
        if text[: len(text) - len(carry)].replace(b"\r\n", b"\n").translate(None, b"\n"):
            return False
        if not block:
            return True
        text = carry + block
