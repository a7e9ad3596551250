"""Two independent implementations of the glossary must agree on any scenario.

The Python engine (what replay and the workers store) and the SQL recount (what `verify` computes
from raw events) are written separately; hypothesis throws random, tie-heavy, duplicated scenarios
at both and `verify` must find no difference.
"""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings

from stagewatch.replay import replay_events
from stagewatch.store import open_store
from stagewatch.verify import verify
from tests.processors.test_order_independence import scenarios

_n = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = open_store(f"chdb:{tmp_path_factory.mktemp('verify') / 'store'}")
    yield st
    st.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_engine_and_sql_recount_agree(store, scenario):
    _, shuffled = scenario
    campaign = f"c{next(_n)}"  # a fresh campaign per example: the store is shared
    events = []
    for ev in shuffled:
        d = {f: getattr(ev, f) for f in ev.__struct_fields__}
        d["campaign"] = campaign
        events.append(type(ev)(**d))
    replay_events(store, events)
    report = verify(store, campaign=campaign)
    assert report.ok, report.differences
