"""last_event_ts, last_progress_ts and the stall rule."""

from tests.builders import file, job, numbers

H = 3600.0


def test_last_event_and_progress():
    evs = [job("a", "started", 100), job("a", "terminated", 200, exit_code=0), job("b", "submitted", 300),
           file("x", "input_declared", 50), file("y", "output_located", 250)]
    n = numbers(evs)
    assert n["last_event_ts"] == 300
    assert n["last_progress_ts"] == 250


def test_stalled_needs_work_left_and_no_progress_beyond_threshold():
    evs = [job("a", "started", 0), job("a", "terminated", 1000, exit_code=0), job("b", "submitted", 1000)]
    assert numbers(evs, as_of=1000 + 2 * H)["stalled"] is False  # exactly the threshold: not beyond
    assert numbers(evs, as_of=1001 + 2 * H)["stalled"] is True
    assert numbers(evs, as_of=1001 + 2 * H, threshold_s=3 * H)["stalled"] is False


def test_finished_stage_never_stalls():
    evs = [job("a", "started", 0), job("a", "terminated", 10, exit_code=0)]
    assert numbers(evs, as_of=1e9)["stalled"] is False


def test_no_progress_yet_measures_from_first_event():
    evs = [file("x", "input_declared", 100), job("a", "submitted", 5000)]
    assert numbers(evs, as_of=100 + 2 * H + 1)["stalled"] is True
    assert numbers(evs, as_of=100 + 2 * H - 1)["stalled"] is False


def test_pending_files_alone_count_as_work_left():
    evs = [file("x", "input_declared", 0)]
    assert numbers(evs, as_of=3 * H)["stalled"] is True
