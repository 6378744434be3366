"""The spool's file format under crashes: segments roll, a restarted spool never appends to a
segment a crash may have cut, a torn last line is skipped, a complete one without its newline kept."""
from __future__ import annotations

from engine.cdr.spool import Spool
from tests.cdr.factories import cdr, queue_event


def test_segments_roll_at_their_size_and_replay_oldest_first(tmp_path):
    spool = Spool(tmp_path, segment_bytes=2_000)
    for i in range(0, 30, 3):
        spool.append([cdr(i), cdr(i + 1), queue_event(i + 2)])
    spool.sync()
    assert spool.segments > 3
    seen = []
    while (path := spool.oldest()) is not None:
        seen += [getattr(r, "uuid", None) or r.call_uuid for r in spool.read(path)]
        spool.remove(path)
    assert seen == [f"leg-{i:06d}" for i in range(30)]
    assert spool.bytes == 0 and not list(tmp_path.glob("*.spool"))


def test_a_restarted_spool_starts_a_new_segment_and_survives_a_torn_write(tmp_path):
    first = Spool(tmp_path)
    first.append([cdr(1), cdr(2)])
    first.sync()
    [segment] = tmp_path.glob("*.spool")
    whole = segment.read_bytes()
    # a crash cut the third record short
    third = Spool(tmp_path / "x")
    third.append([cdr(3)])
    third.close()
    line = next((tmp_path / "x").glob("*.spool")).read_bytes()
    segment.write_bytes(whole + line[: len(line) // 2])

    again = Spool(tmp_path)
    again.append([cdr(4)])
    again.close()
    assert again.segments == 2
    oldest = again.oldest()
    assert oldest == segment
    assert [r.uuid for r in again.read(oldest)] == ["leg-000001", "leg-000002"]
    assert again.unreadable_lines == 0

    # the same with only the final newline missing: the record is whole, so it is kept
    segment.write_bytes(whole + line.rstrip(b"\n"))
    assert [r.uuid for r in again.read(segment)] == ["leg-000001", "leg-000002", "leg-000003"]
