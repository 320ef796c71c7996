"""Series reads of the read-back (uploader/send/series.py): decoding, snapshots, passes."""

from __future__ import annotations

import json
import threading
import time

from comet_journal.uploader.send.series import PointReader, SeriesReads, iter_points


def _answer(points: list[dict]) -> bytes:
    return json.dumps({"experimentKey": "k", "metricName": "m", "metrics": points},
                      ensure_ascii=False).encode()


def test_points_decode_one_at_a_time_across_windows_and_split_characters():
    points = [{"metricName": "é-ü", "metricValue": str(i / 7), "step": i, "offset": i}
              for i in range(3000)]
    for window in (5, 97, 4096, 1 << 20):
        assert list(iter_points(_answer(points), window)) == points, window
    assert list(iter_points(_answer([]))) == [] and list(iter_points(None)) == []


def _reads(series: dict) -> tuple[SeriesReads, list]:
    fetched: list = []

    def fetch(key, name, make_reader):
        fetched.append(name)
        time.sleep(0.2)  # a read takes time: read-backs arriving meanwhile wait for the next
        broken = make_reader()  # an attempt cut short (a timeout): dropped with its reader
        broken.feed(_answer(series[name])[:40])
        assert broken.problem() is not None
        reader = make_reader()
        body = _answer(series[name])
        for start in range(0, len(body), 7):  # as the answer arrives, in pieces
            reader.feed(body[start:start + 7])
        assert reader.problem() is None
        return reader

    return SeriesReads(fetch, lambda p: (p["metricName"], p["step"]), sent_at_start=10), \
        fetched


def test_a_snapshot_is_read_once_and_learns_this_runs_acks():
    reads, fetched = _reads({"m": [{"metricName": "m", "step": s} for s in (1, 2, 2)]})
    counts = [reads.snapshot("k", "m") for _ in range(3)]
    assert fetched == ["m"]
    assert counts[0][hash(("m", 2))] == 2 and counts[0][hash(("m", 3))] == 0
    reads.note_applied("k", "m", ("m", 3), seq=5)  # a call an earlier run may have sent
    reads.note_applied("k", "m", ("m", 4), seq=11)  # a later call: not the snapshot's
    assert reads.snapshot("k", "m")[hash(("m", 3))] == 1
    assert reads.snapshot("k", "m")[hash(("m", 4))] == 0 and fetched == ["m"]


def test_read_backs_in_doubt_together_share_passes():
    reads, fetched = _reads({"m": [{"metricName": "m", "step": s} for s in range(100)]})
    results: dict = {}

    def ask(step):
        results[step] = reads.fresh("k", "m", {hash(("m", step))})[hash(("m", step))]

    threads = [threading.Thread(target=ask, args=(s,)) for s in range(0, 200, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {s: int(s < 100) for s in range(0, 200, 10)}
    assert 1 <= len(fetched) <= 3  # 20 calls in doubt: a pass in progress, then one more


def test_output_length_is_counted_as_the_answer_streams_in():
    from comet_journal.uploader.send.output_length import OutputLength
    text = 'line "q" \\ tab\t é 😀 \u2028 \ud7ff end\n' * 40
    for ascii_only in (True, False):  # escapes (surrogate pairs too) or raw UTF-8
        body = json.dumps({"experimentKey": "k", "output": text}, ensure_ascii=ascii_only).encode()
        for window in (1, 2, 3, 5, 7, 64, 1 << 20):
            reader = OutputLength()
            for start in range(0, len(body), window):
                reader.feed(body[start:start + window])
            assert reader.problem() is None and reader.length == len(text), (ascii_only, window)
    cut = OutputLength()
    cut.feed(json.dumps({"output": text}).encode()[:100])
    assert cut.problem() is not None
    empty = OutputLength()
    empty.feed(b'{"output": null}')
    assert empty.problem() is None and empty.length == 0


def test_a_pass_skips_items_it_does_not_want_undecoded_but_never_a_wanted_one():
    points = [{"metricName": "m", "metricValue": i, "step": i, "timestamp": 1000 + i // 10}
              for i in range(5000)]
    points[1234]["timestamp"] = 1200.0  # not an integer literal: never skipped on its text
    body = _answer(points)
    for times in ({1100, 1200, 1499}, {9999}, {1100, None}):
        got = []
        reader = PointReader(lambda p: got.append(p["step"]) if p["timestamp"] in times else None,
                             times=times)
        for start in range(0, len(body), 997):
            reader.feed(body[start:start + 997])
        assert reader.problem() is None
        assert got == [p["step"] for p in points if p["timestamp"] in times], times
