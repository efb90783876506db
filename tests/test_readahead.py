"""The restore's read-ahead thread: the batches in order, the reader's errors where they would have been met, and
the reader stopped when the replay stops, with no more than a few batches ever waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from chrono_ci.errors import VerificationFailed
from chrono_ci.pipeline.read import ArchiveContents
from chrono_ci.pipeline.readahead import QUEUE_BATCHES, ReadAhead


def contents() -> ArchiveContents:
    return ArchiveContents(0, "", 0, True, {})


def reader_of(
    pieces: list[bytes], fail_after: int | None = None
) -> Callable[[Callable[[bytes], None]], ArchiveContents]:
    def read(on_raw: Callable[[bytes], None]) -> ArchiveContents:
        for index, piece in enumerate(pieces):
            if fail_after is not None and index == fail_after:
                raise VerificationFailed("damaged")
            on_raw(piece)
        return contents()

    return read


def test_the_batches_come_in_order_then_the_last_one() -> None:
    pieces = [str(n).encode() for n in range(100)]
    ahead = ReadAhead(reader_of(pieces), lambda piece: piece.decode(), lambda: "end")
    with ahead as batches:
        got = list(batches)
    assert got == [str(n) for n in range(100)] + ["end"]
    assert ahead.contents.trailer_seen


def test_an_error_while_reading_comes_after_the_batches_read_before_it() -> None:
    got: list[bytes] = []
    ahead = ReadAhead(reader_of([b"a", b"b", b"c"], fail_after=2), lambda piece: piece, lambda: b"end")
    with pytest.raises(VerificationFailed, match="damaged"), ahead as batches:
        for batch in batches:
            got.append(batch)
    assert got == [b"a", b"b"]


def test_the_replay_stopping_stops_the_reader_and_at_most_a_few_batches_were_read_ahead() -> None:
    split_calls: list[int] = []
    alive_before = threading.active_count()

    def split(piece: bytes) -> bytes:
        split_calls.append(1)
        return piece

    pieces = [b"x"] * 10_000
    ahead = ReadAhead(reader_of(pieces), split, lambda: b"end")
    with pytest.raises(RuntimeError, match="server said no"), ahead as batches:
        for _batch in batches:
            time.sleep(0.05)  # the reader fills the queue meanwhile, and must wait there
            raise RuntimeError("server said no")
    # One taken, QUEUE_BATCHES waiting, one split and blocked on the full queue (it goes in while the queue is
    # emptied on the way out), and one split before the reader sees that the replay stopped.
    assert len(split_calls) <= QUEUE_BATCHES + 3
    assert threading.active_count() == alive_before, "the reading thread outlived the replay"
