#!/usr/bin/env bash
# runc-ckpt demo: podman moves a running container to a new one through a
# checkpoint archive, with runc-ckpt as its OCI runtime.
#
#   bash contrib/demo.sh [RUNC_CKPT_BIN]      (as root; `make demo` runs this)
#
# Everything happens in a private podman setup under a temp dir: its own
# containers.conf, storage.conf and registries.conf (rendered from
# contrib/private-*.conf.in, the same templates the e2e tests use), its own
# --root/--runroot. The host's podman configuration and storage are neither
# read nor written. The image is busybox-static, imported from a tarball, as
# nothing is pulled from a registry.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-${RUNC_CKPT_BIN:-$(command -v runc-ckpt || true)}}
IMAGE=localhost/runc-ckpt-demo-busybox:latest
# Written by rename, so a reader never sees a half-written (empty) file.
COUNTER='i=0; while true; do i=$((i+1)); echo $i > /data/.counter; mv /data/.counter /data/counter; sleep 0.1; done'

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'demo FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (podman, runc and CRIU need it)"
[ -n "$BIN" ] || die "usage: $0 /path/to/runc-ckpt"
[ -x "$BIN" ] || die "$BIN is not an executable runc-ckpt"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
for tool in podman conmon runc criu busybox tar; do
    command -v "$tool" >/dev/null || PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin command -v "$tool" >/dev/null ||
        die "$tool is not installed: run contrib/install-deps.sh"
done

# Short path: podman refuses a runroot longer than 50 characters.
D=$(mktemp -d /tmp/runc-ckpt-demo.XXXXXX)
export CONTAINERS_CONF=$D/containers.conf
export CONTAINERS_STORAGE_CONF=$D/storage.conf
export CONTAINERS_REGISTRIES_CONF=$D/registries.conf

podman() { command podman --root "$D/root" --runroot "$D/runroot" --storage-driver overlay "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    step "cleaning up $D"
    podman rm -fa -t 0 >/dev/null 2>&1 || true
    podman volume rm -fa >/dev/null 2>&1 || true
    podman rmi -fa >/dev/null 2>&1 || true
    # Whatever podman left mounted under D (overlay layers, the private
    # storage mount), deepest first.
    awk -v d="$D" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$D"
    if [ "$rc" = 0 ]; then echo "demo OK"; else echo "demo FAILED (exit $rc)" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "runc-ckpt: $BIN"
version=$("$BIN" --version) || die "$BIN --version failed"
# runc's version text first (tools match its first line), then ours as `runc-ckpt: X`.
case $version in "runc version "*"
runc-ckpt: "*) ;; *) die "$BIN is not runc-ckpt" ;; esac
printf '%s\n' "$version" | sed 's/^/    /'

step "writing a private podman configuration in $D"
mkdir -p "$D/tmp" "$D/networks"
sed -e "s#@DIR@#$D#g" -e "s#@RUNTIME@#$BIN#g" "$HERE/private-containers.conf.in" >"$CONTAINERS_CONF"
sed -e "s#@DIR@#$D#g" "$HERE/private-storage.conf.in" >"$CONTAINERS_STORAGE_CONF"
echo 'unqualified-search-registries = []' >"$CONTAINERS_REGISTRIES_CONF"
info "runtime runc-ckpt = [\"$BIN\"], ulimits nofile=1024 nproc=4096, cgroupfs, network none"

step "importing a busybox-static image"
img=$D/image
mkdir -p "$img/bin" "$img/etc" "$img/tmp" "$img/data" "$img/proc" "$img/sys" "$img/dev"
chmod 1777 "$img/tmp"
cp "$(command -v busybox)" "$img/bin/busybox"
for applet in $("$img/bin/busybox" --list); do
    [ -e "$img/bin/$applet" ] || ln -s busybox "$img/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$img/etc/passwd"
tar -C "$img" -cf "$D/image.tar" .
podman import -q --change 'ENV=PATH=/usr/sbin:/usr/bin:/sbin:/bin' "$D/image.tar" "$IMAGE" >/dev/null
info "$IMAGE"

step "running a counter container (runtime runc-ckpt, named volume 'democount' at /data)"
podman volume create democount >/dev/null
podman run -d --name demo-counter --runtime runc-ckpt -v democount:/data "$IMAGE" sh -c "$COUNTER" >/dev/null
info "OCI runtime: $(podman inspect -f '{{.OCIRuntime}}' demo-counter)"
counter() {
    local v
    v=$(podman exec "$1" cat /data/counter 2>/dev/null) || v=0
    case $v in '' | *[!0-9]*) v=0 ;; esac
    echo "$v"
}
for _ in $(seq 50); do [ "$(counter demo-counter)" -ge 10 ] && break; sleep 0.1; done
info "counter is at $(counter demo-counter) and counting"

step "checkpointing it into one archive (podman container checkpoint --export)"
archive=$D/demo-counter.tar.zst
podman container checkpoint --export "$archive" --compress zstd demo-counter >/dev/null
before=$(cat "$(podman volume inspect -f '{{.Mountpoint}}' democount)/counter")
info "archive: $archive ($(du -h "$archive" | cut -f1))"
info "counter at the checkpoint: $before"

step "inspecting the archive without restoring it (runc-ckpt inspect)"
"$BIN" inspect "$archive" | sed 's/^/    /'

step "removing the container and its volume"
podman rm demo-counter >/dev/null
podman volume rm democount >/dev/null
info "containers left: $(podman ps -aq | wc -l)"

step "restoring the archive as a NEW container 'demo-restored' (podman container restore --import)"
podman container restore --import "$archive" --name demo-restored >/dev/null
info "status: $(podman inspect -f '{{.State.Status}}' demo-restored), OCI runtime: $(podman inspect -f '{{.OCIRuntime}}' demo-restored)"
first=$(counter demo-restored)
sleep 1
after=$(counter demo-restored)
info "counter right after the restore: $first"
info "counter one second later:        $after"

step "checking"
[ "$first" -ge "$before" ] || die "the counter went back ($before -> $first): the process started over"
[ "$after" -gt "$before" ] || die "the counter did not go on ($before -> $after)"
[ "$(podman inspect -f '{{.OCIRuntime}}' demo-restored)" = runc-ckpt ] || die "restored with another runtime"
info "before: $before  after: $after  -> the same process went on counting in a new container"
