#!/bin/sh
# Builds the lab's Debian guest disk: a minimal Debian 12 root filesystem made
# by mmdebstrap from Debian's packages, with OpenMPI, sshd and the lab's
# workloads, as an ext4 qcow2 base that every lab VM overlays. It boots with
# the lab's kernel and initramfs (src/lab/guest), whose /init mounts it when
# the kernel command line says vc.root=/dev/vda and hands over to vc-init.
#
#   build.sh OUTDIR    -> OUTDIR/base.qcow2, OUTDIR/stamp
# The stamp keeps the inputs' checksum: a second run with the same inputs
# only checks. VIRT_COHORT_DEBIAN_MIRROR picks the mirror.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=$1
mirror=${VIRT_COHORT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the guests run: sshd for the launchers, OpenMPI, Redis and Python for the web workload, and
# ethtool (vc-init turns segmentation offload off with it where the lab compares counts).
packages="openssh-server,openmpi-bin,iproute2,ethtool,procps,iputils-ping,netbase,hostname,redis-server,python3"
# Room the build needs: the unpacked tree, the raw ext4 image and the qcow2 copy.
need_mib=2500

die() { echo "build.sh: error: $*" >&2; exit 1; }
# What only this image needs, installed here rather than by `npm run setup`,
# so that a set-up without real-app labs stays as fast as before.
tools="mmdebstrap:mmdebstrap qemu-img:qemu-utils mke2fs:e2fsprogs mpicc:libopenmpi-dev"
missing=""
for t in $tools; do command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"; done
if [ -n "$missing" ]; then
	[ "$(id -u)" = 0 ] || die "missing:$missing; install them (apt-get install$missing) or run as root"
	echo "build.sh: installing Debian packages:$missing"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
		die "apt-get install$missing failed: run apt-get update, and check the machine reaches a Debian mirror"
fi

for f in build.sh vc-init stencil.c vcweb.py; do
	[ -f "$here/$f" ] || die "$here/$f is missing: the image's sources sit next to build.sh"
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
inputs=$( (cat "$here/build.sh" "$here/vc-init" "$here/stencil.c" "$here/vcweb.py"; echo "$mirror $packages") | sha256sum | cut -d' ' -f1)
if [ -s "$out/base.qcow2" ] && [ "$(sed -n 's/^inputs //p' "$out/stamp" 2>/dev/null)" = "$inputs" ]; then
	exit 0
fi

avail=$(df -Pm "$out" | awk 'NR == 2 { print $4 }')
[ "$avail" -ge "$need_mib" ] || die "the Debian guest image needs about $need_mib MiB free in $out; only $avail MiB are: free some space or set VIRT_COHORT_RUN_DIR elsewhere"
start=$(date +%s)
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP

# The workload is built here, against the same Debian 12 OpenMPI the guest installs.
mpicc -O2 -Wall -Wextra -Werror -o "$tmp/stencil" "$here/stencil.c" || die "compiling stencil.c failed"

echo "build.sh: building the Debian 12 guest root filesystem from $mirror (a few minutes, once)"
root=$tmp/root
mmdebstrap --quiet --variant=minbase --include="$packages" \
	--customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
	bookworm "$root" "deb $mirror bookworm main" </dev/null >"$tmp/mmdebstrap.log" 2>&1 || {
	tail -n 20 "$tmp/mmdebstrap.log" >&2
	die "mmdebstrap failed (above): is $mirror reachable? set VIRT_COHORT_DEBIAN_MIRROR to a Debian mirror that is"
}
install -m 755 "$tmp/stencil" "$root/usr/local/bin/stencil"
install -m 755 "$here/vc-init" "$root/usr/local/sbin/vc-init"
install -m 755 "$here/vcweb.py" "$root/usr/local/bin/vcweb"
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*_Packages "$root/usr/share/doc" "$root/usr/share/man"
mkdir -p "$root/config" "$root/root/.ssh"

# ext4 filled straight from the tree (no loop mount), with room for the guests' writes.
used=$(du -sm "$root" | cut -f1)
size=$((used + used / 2 + 256))
mke2fs -q -t ext4 -L vcroot -d "$root" "$tmp/root.img" "${size}M" >/dev/null || die "mke2fs -d failed"
qemu-img convert -O qcow2 "$tmp/root.img" "$tmp/base.qcow2" || die "qemu-img convert failed"
mv "$tmp/base.qcow2" "$out/base.qcow2"
printf 'inputs %s\n' "$inputs" >"$out/stamp"
echo "build.sh: Debian guest image built in $(($(date +%s) - start)) s: $out/base.qcow2 ($(du -h "$out/base.qcow2" | cut -f1) on disk, ${size} MiB file system, ${used} MiB used)"
