"""PagedNames: every name added is found; a name never added is not (but for a 64-bit hash collision)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stagewatch.paged_names import PagedNames

names = st.lists(st.text(min_size=0, max_size=20), max_size=60)


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(names, max_size=6), others=names)
def test_added_names_are_found_and_others_are_not(batches: list[list[str]], others: list[str]) -> None:
    paged, added = PagedNames(), set()
    for batch in batches:
        paged.update(batch)
        added.update(batch)
        assert all(n in paged for n in added)
    assert len(paged) == len(added)  # a name added again takes no second slot
    assert not any(n in paged for n in others if n not in added)


def test_an_empty_set_finds_nothing_and_takes_eight_bytes_a_name() -> None:
    paged = PagedNames()
    assert "job-1" not in paged and len(paged) == 0
    paged.update(f"fifebatch1#{i}.0" for i in range(10_000))
    assert len(paged) == 10_000 and "fifebatch1#9999.0" in paged and "fifebatch1#10000.0" not in paged
    assert paged._hashes.itemsize * len(paged._hashes) == 80_000
