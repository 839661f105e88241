#!/bin/sh
# Builds the WAN delay line into OUTDIR/vc-wandelay, only when the source is
# newer than the binary, so a set-up re-run costs nothing.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
SRC="$(cd "$(dirname "$0")" && pwd)/wandelay.c"
OUT="$1/vc-wandelay"
if [ -x "$OUT" ] && [ ! "$SRC" -nt "$OUT" ]; then
  exit 0
fi
mkdir -p "$1"
# Build next to the target and rename, so a running lab never sees half a binary.
gcc -O2 -Wall -Wextra -Werror -o "$OUT.tmp.$$" "$SRC" -lnetfilter_queue
mv -f "$OUT.tmp.$$" "$OUT"
