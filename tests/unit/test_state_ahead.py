"""`runc state` asked ahead (runtime.containerstate.prefetch): commands.checkpoint starts it before the flow's
modules load, and the flow's own state() takes that answer. One query, never a stale one: a repair by
state/settle makes the flow ask again, and an answer never taken is ended with the call."""

from __future__ import annotations

import json

import pytest

from runc_ckpt.base.globalflags import parse
from runc_ckpt.runtime import containerstate
from runc_ckpt.state import settle
from tests.unit.test_checkpoint_flows import Env


@pytest.fixture
def env(tmp_path, fp, monkeypatch) -> Env:
    return Env(tmp_path, fp, monkeypatch)


def _state_calls(env: Env) -> list[list[str]]:
    return [list(c) for c in env.fp.calls if c[-2] == "state"]


def test_the_answer_asked_ahead_is_the_one_state_returns(env):
    env.container("ctr")
    env.register_state("ctr")           # once: a second query would not be registered
    inv = parse(["checkpoint", "ctr"])
    containerstate.prefetch(env.runc, inv, "ctr")
    containerstate.prefetch(env.runc, inv, "ctr")     # asked once however often
    st = containerstate.state(env.runc, inv, "ctr")
    assert (st.id, st.status, st.pid) == ("ctr", "running", 4242)
    assert _state_calls(env) == [env.query([], "state", "ctr")]


def test_an_error_asked_ahead_is_raised_as_runc_said_it(env):
    env.register_missing("gone")
    inv = parse(["checkpoint", "gone"])
    containerstate.prefetch(env.runc, inv, "gone")
    with pytest.raises(Exception, match="container does not exist"):
        containerstate.state(env.runc, inv, "gone")


def test_forget_ends_the_query_and_the_next_state_asks_again(env):
    env.container("ctr")
    env.register_state("ctr", occurrences=2)
    inv = parse(["checkpoint", "ctr"])
    containerstate.prefetch(env.runc, inv, "ctr")
    containerstate.forget()
    assert containerstate._ahead == {}
    containerstate.state(env.runc, inv, "ctr")
    assert len(_state_calls(env)) == 2


def test_a_checkpoint_asks_runc_state_once(env):
    env.container("ctr")
    env.register_state("ctr")           # once: a second query would not be registered
    env.register_checkpoint(["ctr"])
    assert env.main("checkpoint", "ctr") == 0
    assert len(_state_calls(env)) == 1 and len(env.checkpoint_calls()) == 1
    assert containerstate._ahead == {}


@pytest.mark.parametrize("repaired", [True, False])
def test_a_container_settle_looks_at_is_asked_about_again(env, monkeypatch, capfd, repaired):
    """The answer asked ahead said "created" (not checkpointable). A container with something of ours in the
    state dir is settled under its lock first: that lock may have been waited for while another call (a
    migration) changed the container, or the settle repairs it. The flow asks again, and gets "running"."""
    doc = env.container("ctr")
    ahead = dict(doc, status="created")
    env.fp.register(env.query([], "state", "ctr"), stdout=json.dumps(ahead))
    env.fp.register(env.query([], "state", "ctr"), stdout=json.dumps(doc))
    monkeypatch.setattr(settle, "needed", lambda *a: True)
    monkeypatch.setattr(settle, "settle", lambda *a: ["resumed container ctr, left frozen by a killed checkpoint"]
                        if repaired else [])
    env.register_checkpoint(["ctr"])
    assert env.main("checkpoint", "ctr") == 0 and len(_state_calls(env)) == 2
    assert ("resumed container ctr" in capfd.readouterr().err) is repaired
