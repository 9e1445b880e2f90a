"""Named volumes among the spec's bind mounts."""

from __future__ import annotations

from runc_ckpt.volumes import bind_mounts, volume_name

ROOTS = ["/var/lib/containers/storage/volumes", "/srv/vols/"]


def test_volume_name_from_any_root():
    assert volume_name("/var/lib/containers/storage/volumes/db/_data", ROOTS) == "db"
    assert volume_name("/srv/vols/web/_data/", ROOTS) == "web"
    assert volume_name("/srv/vols/./web/_data", ROOTS) == "web"


def test_not_a_volume():
    assert volume_name("/srv/vols/web", ROOTS) is None                 # no _data
    assert volume_name("/srv/vols/a/b/_data", ROOTS) is None           # nested: not <root>/<name>
    assert volume_name("/elsewhere/web/_data", ROOTS) is None          # unknown root
    assert volume_name("/srv/vols/../etc/_data", ROOTS) is None        # normalises out of the root
    assert volume_name("/_data", ROOTS) is None


def test_bind_mounts_listed_in_spec_order():
    spec = {"mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/db", "type": "bind", "source": "/srv/vols/db/_data", "options": ["rbind"]},
        {"destination": "/etc/hosts", "type": "none", "source": "/run/c/hosts", "options": ["bind", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
        {"destination": "/data", "source": "/srv/vols/data/_data", "options": ["rbind", "rw"]},
    ]}
    got = bind_mounts(spec, ROOTS)
    assert [(b.destination, b.volume) for b in got] == [("/db", "db"), ("/etc/hosts", None), ("/data", "data")]
    assert got[1].manifest_entry(False) == {"destination": "/etc/hosts", "source": "/run/c/hosts",
                                            "archived_as": None}
    assert got[0].manifest_entry(True)["archived_as"] == "db"


def test_spec_without_mounts():
    assert bind_mounts({}, ROOTS) == [] and bind_mounts({"mounts": None}, ROOTS) == []
