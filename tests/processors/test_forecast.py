"""The forecast (processors.forecast): located time, rate over the window, ETA, and their edge cases."""

from __future__ import annotations

from processors.engine import Engine
from processors.forecast import eta, forecast, located_rate_per_h, stage_forecast, window_seconds
from tests.builders import C, S, file

H = 3600.0
W = window_seconds(6)


def fc(events, as_of, window_s=W):
    e = Engine()
    e.apply_all(events)
    return stage_forecast(e.stage(C, S), as_of, window_s)


def inputs(n, ts=0.0):
    return [file(f"in{i}", "input_declared", ts) for i in range(n)]


def located(i, ts, declared_ts=None, out=None):
    out = out or f"out{i}"
    return [file(out, "output_declared", ts if declared_ts is None else declared_ts, parents=[f"in{i}"]),
            file(out, "output_located", ts)]


def test_rate_counts_inputs_located_in_the_window_and_eta_extrapolates():
    events = inputs(10) + located(0, 10 * H) + located(1, 12 * H) + located(2, 13 * H) + located(3, 4 * H)
    f = fc(events, as_of=13 * H)  # window (7 h, 13 h]: in0, in1, in2 -> 3 in 6 h
    assert f["located_rate_per_h"] == 0.5
    assert f["eta"] == 13 * H + 6 * 6 * H / 3  # 6 left at 0.5/h -> 12 h
    assert fc(events, as_of=10 * H - 1)["located_rate_per_h"] == round(1 / 6, 2)  # in3 only; later ones not yet


def test_window_is_half_open_and_the_later_of_declaration_and_location_counts():
    events = inputs(3) + located(0, 7 * H) + located(1, 1 * H, declared_ts=8 * H)
    f = fc(events, as_of=13 * H)  # in0 at exactly as_of - 6 h: out; in1 became located at 8 h (declared then): in
    assert f["located_rate_per_h"] == round(1 / 6, 2)
    assert fc(events, as_of=7 * H)["located_rate_per_h"] == round(1 / 6, 2)  # in0 at exactly as_of: in


def test_earliest_output_counts_and_a_later_output_does_not_move_it():
    events = inputs(2) + located(0, 2 * H) + located(0, 12 * H, out="again")
    assert fc(events, as_of=13 * H)["located_rate_per_h"] == 0.0  # in0 located at 2 h, long before the window
    assert fc(events, as_of=13 * H)["eta"] is None  # rate 0


def test_eta_null_when_nothing_is_left():
    events = inputs(1) + located(0, 12 * H)
    f = fc(events, as_of=13 * H)
    assert f["located_rate_per_h"] == round(1 / 6, 2) and f["eta"] is None


def test_outputs_of_files_that_are_not_inputs_are_not_counted():
    events = located(0, 12 * H)  # in0 never declared as input
    assert fc(events, as_of=13 * H) == {"located_rate_per_h": 0.0, "eta": None}


def test_integer_rounding_half_up():
    assert window_seconds(6) == 21600 and window_seconds(0) == 1 and window_seconds(0.5) == 1800
    assert located_rate_per_h(1, 3 * 3600) == 0.33 and located_rate_per_h(1, 8 * 3600) == 0.13  # 0.125 -> 0.13
    assert eta(100.0, 1, 3, 10) == 100.0 + 3  # 10/3 = 3.33 -> 3
    assert eta(100.0, 1, 4, 10) == 100.0 + 3  # 2.5 -> 3 (half up)
    assert eta(100.0, 0, 4, 10) is None and eta(100.0, 5, 0, 10) is None
    assert forecast([None, 5.0, 10.0, 11.0], remaining=1, as_of=10.0, window_s=5) == \
        {"located_rate_per_h": 720.0, "eta": 15.0}
