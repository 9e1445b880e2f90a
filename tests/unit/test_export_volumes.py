"""Named volumes and io.runc-ckpt.volumes bind mounts among the spec's bind mounts, and their names."""

from __future__ import annotations

import os

import pytest

from runc_ckpt.base.errors import RuncCkptError
from runc_ckpt.restore.podmanspec import bind_volume_destination
from runc_ckpt.runtime.volumes import bind_mounts, bind_volume_name, check_listed, volume_name

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


# ---- bind mounts listed in io.runc-ckpt.volumes


def test_bind_volume_name_scheme():
    assert bind_volume_name("/extra") == "bind-extra"
    assert bind_volume_name("/var/lib/app_data/") == "bind-var-lib-app_data"
    assert bind_volume_name("/srv/./x/../y") == "bind-srv-y"          # normalised like the annotation
    assert bind_volume_name("/var/lib/my-app") == "bind-var-lib-my%2dapp"
    assert bind_volume_name("/etc/app.d") == "bind-etc-app.d"
    assert bind_volume_name("/.cache") == "bind-%2ecache"             # no name part starts with "."
    assert bind_volume_name("/a..b") == "bind-a.%2eb"                 # never ".."
    assert bind_volume_name("/data 1/ü") == "bind-data%201-%c3%bc"


def test_bind_volume_names_are_single_safe_components_and_distinct():
    tricky = ["/a-b", "/a/b", "/a%2db", "/a/-b", "/a-/b", "/a--b", "/a//b/", "/x/..y", "/x/.y", "/x./y", "/...",
              "/a b", "/a%20b", "/", "/bind-a", "/a\\b", "/a:b", "/a\nb"]
    names = {d: bind_volume_name(d) for d in tricky}
    for d, n in names.items():
        assert n.startswith("bind-") and "/" not in n and ".." not in n and "\\" not in n and "\n" not in n, (d, n)
    distinct = {os.path.normpath(d).lstrip("/") for d in tricky}
    assert len(set(names.values())) == len(distinct)   # only "/a/b" and "/a//b/" are one destination


def test_listed_bind_mount_is_archived_under_its_bind_name():
    spec = {"mounts": [
        {"destination": "/db", "type": "bind", "source": "/srv/vols/db/_data"},
        {"destination": "/extra/", "type": "bind", "source": "/host/extra", "options": ["rbind"]},
        {"destination": "/other", "type": "bind", "source": "/host/other"},
    ]}
    got = bind_mounts(spec, ROOTS, ("/extra", "/db"))
    assert [(b.destination, b.volume, b.listed) for b in got] == [
        ("/db", "db", False),                    # a listed named volume stays a named volume
        ("/extra/", "bind-extra", True),
        ("/other", None, False)]
    assert got[1].manifest_entry(True) == {"destination": "/extra/", "source": "/host/extra",
                                           "archived_as": "bind-extra"}
    assert bind_mounts(spec, ROOTS)[1].volume is None                  # not listed: host path, not archived


def test_only_the_last_mount_of_a_listed_destination_is_archived():
    spec = {"mounts": [{"destination": "/x", "type": "bind", "source": "/host/hidden"},
                       {"destination": "/x", "type": "bind", "source": "/host/seen"}]}
    assert [(b.source, b.volume) for b in bind_mounts(spec, ROOTS, ("/x",))] == [
        ("/host/hidden", None), ("/host/seen", "bind-x")]


@pytest.mark.parametrize("mounts,listed", [
    ([], ("/extra",)),
    ([{"destination": "/extra", "type": "tmpfs", "source": "tmpfs"}], ("/extra",)),   # a mount, not a bind
    ([{"destination": "/extra/sub", "type": "bind", "source": "/h"}], ("/extra",)),
])
def test_listed_destination_that_is_no_bind_mount_is_an_error(mounts, listed):
    with pytest.raises(RuncCkptError, match=r"annotation io\.runc-ckpt\.volumes: /extra is not a bind mount"):
        bind_mounts({"mounts": mounts}, ROOTS, listed)


def test_bind_name_taken_by_a_named_volume_is_an_error():
    spec = {"mounts": [{"destination": "/v", "type": "bind", "source": "/srv/vols/bind-data/_data"},
                       {"destination": "/data", "type": "bind", "source": "/host/data"}]}
    with pytest.raises(RuncCkptError, match="annotation io.runc-ckpt.volumes: .* /data .* bind-data"):
        bind_mounts(spec, ROOTS, ("/data",))


def test_check_listed_wants_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    spec = {"mounts": [{"destination": "/f", "type": "bind", "source": str(f)},
                       {"destination": "/d", "type": "bind", "source": str(tmp_path)}]}
    check_listed(spec, ROOTS, ("/d",))
    with pytest.raises(RuncCkptError, match=f"annotation io.runc-ckpt.volumes: /f is a bind mount of {f}, "
                                            "which is not a directory"):
        check_listed(spec, ROOTS, ("/d", "/f"))


def test_restore_finds_the_bind_mount_again_from_the_name():
    spec = {"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                       {"destination": "/var/lib/my-app", "type": "bind", "source": "/h1", "options": ["rbind"]},
                       {"destination": "/var/lib/my/app", "type": "bind", "source": "/h2"}]}
    assert bind_volume_destination(spec, "bind-var-lib-my%2dapp") == "/var/lib/my-app"
    assert bind_volume_destination(spec, "bind-var-lib-my-app") == "/var/lib/my/app"
    assert bind_volume_destination(spec, "bind-proc") is None       # not a bind mount
    assert bind_volume_destination(spec, "my-app") is None
    assert bind_volume_destination(None, "bind-x") is None
