"""The input-file buckets of the glossary, one by one, and the output counts."""

from processors.engine import Engine
from tests.builders import file, numbers


def declared(*names, ts=0):
    return [file(n, "input_declared", ts) for n in names]


def test_each_bucket_first_rule_that_applies():
    evs = declared("loc", "decl", "cons", "fly", "fail", "skip", "pend")
    evs += [
        file("loc", "delivered", 1), file("loc", "consumed", 2),
        file("loc.out", "output_declared", 3, parents=["loc"]), file("loc.out", "output_located", 4),
        file("decl", "delivered", 1), file("decl", "consumed", 2),
        file("decl.out", "output_declared", 3, parents=["decl"]),
        file("cons", "delivered", 1), file("cons", "consumed", 2),
        file("fly", "delivered", 1),
        file("fail", "delivered", 1), file("fail", "failed", 2),
        file("skip", "delivered", 1), file("skip", "skipped", 2),
    ]
    n = numbers(evs)
    assert n["input_files"] == 7
    assert (n["files_located"], n["files_declared_not_located"], n["files_consumed_no_output"],
            n["files_in_flight"], n["files_failed"], n["files_pending"]) == (1, 1, 1, 1, 2, 1)
    assert n["files_without_located_output"] == 6
    assert n["completion_pct"] == 14.3
    assert n["outputs_declared"] == 2
    assert n["outputs_located"] == 1


def test_location_before_declaration():
    evs = declared("a") + [file("a.out", "output_located", 10)]
    n = numbers(evs)
    assert n["files_located"] == 0  # the location's parents are not known yet
    assert n["outputs_located"] == 1
    evs.append(file("a.out", "output_declared", 5, parents=["a"]))
    n = numbers(evs)
    assert n["files_located"] == 1
    assert n["files_pending"] == 0


def test_output_declared_before_input_declared():
    evs = [file("a.out", "output_declared", 1, parents=["a"]), file("a.out", "output_located", 2)]
    assert numbers(evs)["input_files"] == 0
    evs.append(file("a", "input_declared", 3))
    n = numbers(evs)
    assert (n["input_files"], n["files_located"]) == (1, 1)


def test_any_located_output_of_several_locates_the_input():
    evs = declared("a", "b") + [
        file("m1", "output_declared", 1, parents=["a", "b"]),
        file("m2", "output_declared", 1, parents=["a"]),
        file("m2", "output_located", 2),
    ]
    n = numbers(evs)
    assert n["files_located"] == 1  # a
    assert n["files_declared_not_located"] == 1  # b


def test_retried_file_latest_disposition_wins():
    evs = declared("a") + [file("a", "delivered", 1), file("a", "failed", 2), file("a", "delivered", 3)]
    assert numbers(evs)["files_in_flight"] == 1
    evs.append(file("a", "failed", 4))
    assert numbers(evs)["files_failed"] == 1


def test_consumed_then_redelivered_stays_consumed_no_output():
    evs = declared("a") + [file("a", "delivered", 1), file("a", "consumed", 2), file("a", "delivered", 3)]
    assert numbers(evs)["files_consumed_no_output"] == 1


def test_failed_without_delivery_is_failed_not_pending():
    assert numbers(declared("a") + [file("a", "skipped", 1)])["files_failed"] == 1


def test_tie_on_ts_resolved_by_lifecycle_order():
    # delivered and failed at the same second: failed is later in the lifecycle order
    evs = declared("a") + [file("a", "failed", 5), file("a", "delivered", 5)]
    assert numbers(evs)["files_failed"] == 1


def test_no_input_gives_zero_completion():
    n = numbers([file("x.out", "output_located", 1)])
    assert n["input_files"] == 0 and n["completion_pct"] == 0.0


def test_stages_are_independent():
    e = Engine()
    e.apply_all(declared("a") + [file("a", "input_declared", 0, stage="other", eid="x1")])
    ns = e.numbers(as_of=0)
    assert [(n["stage"], n["input_files"]) for n in ns] == [("other", 1), ("stage1", 1)]
