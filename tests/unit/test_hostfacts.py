"""metadata.hostfacts: the host's facts gathered while runc dumps, started only once runc is spawned."""

from __future__ import annotations

import sys
import threading

from runc_ckpt.base.globalflags import GlobalFlags
from runc_ckpt.metadata import configdump, hostfacts
from runc_ckpt.runtime import logrelay
from runc_ckpt.runtime.criu import cpuinfo


def _counting(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(configdump, "versions",
                        lambda runc, criu, cache=None: calls.append(threading.current_thread().name)
                        or {"runc": "1.1.5", "criu": "4.2.1"})
    monkeypatch.setattr(cpuinfo, "dump", lambda criu, cache=None: calls.append("cpuinfo") or b"img")
    return calls


def test_facts_never_started_are_computed_when_asked(monkeypatch, tmp_path):
    """runc could not be spawned (no thread): wait() returns at once and each fact is asked inline."""
    calls = _counting(monkeypatch)
    facts = hostfacts.HostFacts("/x/runc", "/x/criu", True, str(tmp_path))
    facts.wait()
    assert calls == []
    assert facts.versions("/x/runc", "/x/criu") == {"runc": "1.1.5", "criu": "4.2.1"}
    assert facts.cpuinfo("/x/criu") == b"img"
    assert calls == [threading.current_thread().name, "cpuinfo"]


def test_started_facts_come_from_the_thread_with_the_preloads(monkeypatch, tmp_path):
    calls = _counting(monkeypatch)
    name = "runc_ckpt.archive.layout"
    monkeypatch.delitem(sys.modules, name, raising=False)
    facts = hostfacts.HostFacts("/x/runc", "/x/criu", True, str(tmp_path), (name,))
    assert calls == [] and name not in sys.modules     # nothing happens before start()
    facts.start()
    assert facts.versions("/x/runc", "/x/criu") == {"runc": "1.1.5", "criu": "4.2.1"}
    assert facts.cpuinfo("/x/criu") == b"img"
    assert calls == ["runc-ckpt-hostfacts", "cpuinfo"]   # once each, in the thread
    assert name in sys.modules


def test_spawned_runs_once_runc_is_spawned_and_before_it_is_waited_for(monkeypatch):
    events: list[str] = []

    class Proc:
        def __init__(self, argv, **kwargs) -> None:
            events.append("popen")

        def wait(self) -> int:
            events.append("wait")
            return 0

    monkeypatch.setattr(logrelay.subprocess, "Popen", Proc)
    result = logrelay.run("/x/runc", [], ["checkpoint", "c"], GlobalFlags(), spawned=lambda: events.append("spawned"))
    assert result.returncode == 0
    assert events == ["popen", "spawned", "wait"]
