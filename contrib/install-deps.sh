#!/usr/bin/env bash
# Put the real stack runc-ckpt needs on a Debian 12 machine: runc, podman,
# iptables, busybox-static, zstd from apt, and CRIU >= 4.2.
#
# Idempotent: every step checks first and does nothing when already done.
# Debian 12 ships CRIU 3.17, which fails on recent kernels (vDSO bounds,
# TCP socket options), so CRIU 4.2.1 is built from Debian's source package
# and installed to /usr/local/sbin; the build is cached under
# $RUNC_CKPT_CACHE (default /var/cache/runc-ckpt) so a rerun costs nothing.
set -euo pipefail

CRIU_VERSION=4.2.1
CACHE=${RUNC_CKPT_CACHE:-/var/cache/runc-ckpt}
# skopeo: the transport of checkpoint images to registries and containers-storage;
# docker-registry: the registry the image tests start on 127.0.0.1 themselves.
# python3-venv: the Makefile makes its venv from Debian's python3 (PGO and LTO builds).
APT_PKGS=(runc iptables podman busybox-static zstd uidmap fuse-overlayfs containerd go-md2man skopeo
    docker-registry python3-venv)
CRIU_BUILD_DEPS=(build-essential libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler
    protobuf-compiler python3-protobuf libnl-3-dev libcap-dev libnet1-dev pkg-config
    libbsd-dev libgnutls28-dev libnftables-dev uuid-dev libdrm-dev xz-utils)

log() { printf 'install-deps: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
export DEBIAN_FRONTEND=noninteractive

apt_updated=
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
    log "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# criu_ok: a CRIU >= 4.2 on PATH whose `criu check` passes.
criu_ok() {
    command -v criu >/dev/null || return 1
    local v
    v=$(criu --version 2>/dev/null | sed -n 's/^Version: *//p')
    [ -n "$v" ] || return 1
    [ "$(printf '%s\n4.2\n' "$v" | sort -V | head -n1)" = 4.2 ] || return 1
    criu check >/dev/null 2>&1
}

# The sid source entry reuses the mirror this machine already uses, so no
# host name is baked in here.
add_sid_sources() {
    local list=/etc/apt/sources.list.d/runc-ckpt-sid-src.sources uri
    [ -f "$list" ] && return 0
    uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1)
    [ -n "$uri" ] || uri=$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    [ -n "$uri" ] || { log "cannot find the Debian mirror in apt's sources"; exit 1; }
    cat >"$list" <<EOF
Types: deb-src
URIs: $uri
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
    apt_updated=1
}

build_criu() {
    local src=$CACHE/criu-$CRIU_VERSION
    if [ ! -x "$src/criu/criu" ]; then
        apt_install "${CRIU_BUILD_DEPS[@]}"
        mkdir -p "$CACHE"
        if [ ! -f "$CACHE/criu_$CRIU_VERSION.orig.tar.xz" ]; then
            add_sid_sources
            # apt reports the missing debian.tar.xz as an error, but the
            # orig tarball, all we need, arrives.
            (cd "$CACHE" && apt-get source --download-only "criu=$CRIU_VERSION-1" >/dev/null 2>&1) || true
            [ -f "$CACHE/criu_$CRIU_VERSION.orig.tar.xz" ] || { log "could not download criu_$CRIU_VERSION.orig.tar.xz"; exit 1; }
        fi
        rm -rf "$src"
        tar -C "$CACHE" -xJf "$CACHE/criu_$CRIU_VERSION.orig.tar.xz"
        log "building CRIU $CRIU_VERSION"
        make -C "$src" -j"$(nproc)" criu >"$CACHE/criu-build.log" 2>&1 ||
            { tail -n 30 "$CACHE/criu-build.log" >&2; exit 1; }
    fi
    install -m 0755 "$src/criu/criu" /usr/local/sbin/criu
    hash -r
}

had_registry=$(dpkg-query -W -f='${Status}' docker-registry 2>/dev/null || true)
apt_install "${APT_PKGS[@]}"
# Debian's docker-registry package enables a registry service on :5000; the tests
# run their own, so one this script just installed is switched off again.
if [ "$had_registry" != "install ok installed" ] && command -v systemctl >/dev/null \
    && systemctl is-enabled docker-registry >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
if ! criu_ok; then
    build_criu
    criu_ok || { log "CRIU at $(command -v criu) still fails 'criu check'"; criu check >&2 || true; exit 1; }
fi
# pycriu, CRIU's own image decoder (what crit uses): the restore pre-flight reads the
# images with it. CRIU's Makefile generates its protobuf modules (`make lib`);
# `make install` copies the package into the venv.
build_pycriu() {
    local src=$CACHE/criu-$CRIU_VERSION
    [ -f "$src/lib/pycriu/images/magic.py" ] && [ -f "$src/lib/pycriu/images/pb.py" ] && return 0
    [ -d "$src/lib/pycriu" ] || { log "no CRIU source in $src: pycriu not built (the pre-flight then skips image checks)"; return 0; }
    apt_install "${CRIU_BUILD_DEPS[@]}"
    log "generating pycriu in $src/lib"
    make -C "$src" lib PYTHON=python3 >"$CACHE/pycriu-build.log" 2>&1 ||
        { tail -n 30 "$CACHE/pycriu-build.log" >&2; exit 1; }
}
build_pycriu
log "ready: $(runc --version | head -n1), criu $(criu --version | sed -n 's/^Version: *//p'), $(podman --version)"
