#!/bin/sh
# Render the markdown man pages in docs/ to roff, as podman does, with go-md2man
# (Debian package go-md2man; contrib/install-deps.sh can install it).
#
#   sh docs/render-man.sh [OUTDIR]            # default OUTDIR: build/man
#
# Writes OUTDIR/man1/*.1 and OUTDIR/man5/*.5, so `man -M OUTDIR runc-ckpt`
# works before install. Install with, e.g.:
#   install -D -m 0644 -t $(DESTDIR)/usr/local/share/man/man1 build/man/man1/*.1
#   install -D -m 0644 -t $(DESTDIR)/usr/local/share/man/man5 build/man/man5/*.5
set -eu

docs=$(cd "$(dirname "$0")" && pwd)
out=${1:-$docs/../build/man}

if ! command -v go-md2man >/dev/null 2>&1; then
    echo "render-man.sh: go-md2man is not installed (apt-get install go-md2man)" >&2
    exit 1
fi

for page in "$docs"/*.[1-8].md; do
    name=${page##*/}
    name=${name%.md}                 # runc-ckpt-checkpoint.1
    section=${name##*.}              # 1
    mkdir -p "$out/man$section"
    # go-md2man warns on stderr about constructs it drops; a warning is a bug
    # in the page here, so fail on any output.
    msg=$(go-md2man -in "$page" -out "$out/man$section/$name" 2>&1)
    if [ -n "$msg" ]; then
        echo "render-man.sh: $page: $msg" >&2
        exit 1
    fi
done
echo "man pages rendered into $out"
