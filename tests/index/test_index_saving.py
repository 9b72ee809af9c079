"""index build saves by elapsed time or bytes of new vectors, whichever first (or every N adds)."""

from jointspace.index import saving
from jointspace.index.saving import SaveSchedule


def test_a_save_is_due_after_so_many_bytes_or_seconds(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(saving.time, "monotonic", lambda: now[0])
    schedule = SaveSchedule(seconds=2.0, nbytes=1000)
    assert [schedule.added(300) for _ in range(3)] == [False, False, False]  # 900 bytes, 0 s
    assert schedule.added(100)  # 1000 bytes
    schedule.saved()
    now[0] += 1.9
    assert not schedule.added(10)
    now[0] += 0.1  # 2 s since the save, few bytes
    assert schedule.added(10)
    schedule.saved()
    assert not schedule.added(999)  # the count restarted at the save


def test_a_pinned_schedule_saves_every_n_adds(monkeypatch):
    schedule = SaveSchedule(batches=2)
    due = []
    for _ in range(6):
        due.append(schedule.added(10**9))  # bytes and time do not count
        if due[-1]:
            schedule.saved()
    assert due == [False, True, False, True, False, True]
