#!/bin/sh
# runc-ckpt precheckpoint hook: flush the container's dirty file data to disk
# before CRIU dumps it, so the rootfs diff and volumes archived next to the
# memory images are what the process last wrote.
#
# stdin: the container's OCI state JSON. It syncs the filesystem under the
# container's root from inside the container's mount namespace (its own
# `sync`); if that cannot be done (no pid, no sync in the image), it syncs
# every filesystem from the host.
set -u
state=$(cat)
# The state's top-level "pid" is the only one whose value is a bare number
# (annotation values are JSON strings), so this cannot pick up an annotation.
pid=$(printf '%s' "$state" | grep -o '"pid": *[0-9][0-9]*' | head -n 1 | grep -o '[0-9]*$')
if [ -n "$pid" ] && [ "$pid" -gt 0 ] && nsenter --target "$pid" --mount -- sync -f / 2>/dev/null; then
    echo "sync.sh: synced the root filesystem of pid $pid in its mount namespace"
    exit 0
fi
sync
echo "sync.sh: synced all filesystems on the host"
