#!/bin/sh
# Builds the lab's diskless guest: Debian's kernel plus a busybox initramfs
# whose /init (init.sh) brings up the virtio NIC and runs vcgen (vcgen.c).
#
#   build.sh OUTDIR    -> OUTDIR/vmlinuz, OUTDIR/initrd.img, OUTDIR/stamp
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=$1
busybox=/bin/busybox
# Load order matters: each needs the ones before it (as modules.dep would say).
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net"
# Loaded only by guests with a root disk (vc.root=, the Debian image of src/lab/debian).
disk_modules="virtio_blk crc16 mbcache jbd2 crc32c_generic ext4"

die() { echo "build.sh: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: apt-get install $2"; }

need apt-cache apt
need sha256sum coreutils
[ -x "$busybox" ] || die "$busybox not found: apt-get install busybox-static"

for f in build.sh init.sh vcgen.c vcarp.c; do
	[ -f "$here/$f" ] || die "$here/$f is missing: the guest's sources must sit next to build.sh"
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

# apt-cache costs ~0.7 s on images without a package cache, so the resolved
# kernel is remembered in the stamp until apt's lists or config change.
apt_state=$(ls -lRL --full-time /var/lib/apt/lists /etc/apt 2>/dev/null | sha256sum | cut -d' ' -f1)
files_sum=$(cat "$here/build.sh" "$here/init.sh" "$here/vcgen.c" "$here/vcarp.c" "$busybox" | sha256sum | cut -d' ' -f1)
stamp_of() { echo "$1 $files_sum" | sha256sum | cut -d' ' -f1; }
stamp_field() { sed -n "s/^$1 //p" "$out/stamp" 2>/dev/null || true; }

built() { [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ "$(stamp_field inputs)" = "$(stamp_of "$1")" ]; }
write_stamp() { printf 'inputs %s\nkernel %s\napt %s\n' "$(stamp_of "$1")" "$1" "$apt_state" >"$out/stamp"; }

kernel=$(stamp_field kernel)
if [ -n "$kernel" ] && [ "$(stamp_field apt)" = "$apt_state" ] && built "$kernel"; then
	exit 0
fi

# Follow the flavour metapackage to the real package (e.g. linux-image-6.1.0-56-amd64),
# so a kernel update in the archive changes the stamp and triggers a rebuild.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[^ <>]*\)$/\1/p' | head -n1)
[ -n "$pkg" ] || die "cannot resolve the kernel package behind linux-image-amd64: run apt-get update (Debian amd64 package lists needed)"
ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
[ -n "$ver" ] || die "no candidate version of $pkg: run apt-get update"
kernel="$pkg $ver"
if built "$kernel"; then
	write_stamp "$kernel"
	exit 0
fi

need apt-get apt
need dpkg dpkg
need gzip gzip
need gcc gcc
[ "$(gcc -print-file-name=libc.a)" != libc.a ] || die "static libc (libc.a) not found: apt-get install libc6-dev"
# A dynamic busybox would need a libc in the initramfs too.
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is dynamically linked: apt-get install busybox-static"; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vcguest.XXXXXX")
# Outputs are staged inside OUTDIR so the final renames are atomic.
new=$out/.new.$$
trap 'rm -rf "$tmp" "$new".*' EXIT
trap 'exit 130' INT TERM HUP

mkdir "$tmp/deb" "$tmp/root"
# Let apt's sandbox user write the download; otherwise it warns and runs unsandboxed.
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chmod 711 "$tmp" && chown _apt "$tmp/deb"; fi
(cd "$tmp/deb" && apt-get download -q "$pkg=$ver" >/dev/null) || die "apt-get download $pkg=$ver failed (is the Debian mirror reachable?)"
dpkg -x "$tmp/deb"/*.deb "$tmp/x"

vmlinuz=$(ls "$tmp/x"/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "$pkg has no /boot/vmlinuz-*: is it really a kernel image package?"
moddir=$(ls -d "$tmp/x"/lib/modules/* "$tmp/x"/usr/lib/modules/* 2>/dev/null | head -n1)
[ -n "$moddir" ] || die "$pkg ships no lib/modules"
release=${moddir##*/}

r=$tmp/root
mkdir -p "$r/bin" "$r/dev" "$r/proc" "$r/sys" "$r/tmp" "$r/lib/modules"
cp "$busybox" "$r/bin/busybox"
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
done
cp "$here/init.sh" "$r/init"
chmod 755 "$r/init"
gcc -static -s -O2 -Wall -Wextra -Werror -o "$r/bin/vcgen" "$here/vcgen.c" || die "compiling vcgen.c failed"
gcc -static -s -O2 -Wall -Wextra -Werror -o "$r/bin/vcarp" "$here/vcarp.c" || die "compiling vcarp.c failed"
# Gives the kernel a console to hand to /init; init.sh reopens it anyway if this is missing.
if [ "$(id -u)" = 0 ]; then mknod -m 600 "$r/dev/console" c 5 1; fi

: >"$r/lib/modules/load-order"
: >"$r/lib/modules/disk-order"
add_module() { # NAME LIST
	m=$1
	pat=$(echo "$m" | sed 's/_/[-_]/g') # module file names may spell _ as -
	ko=$(find "$moddir" \( -name "$pat.ko" -o -name "$pat.ko.xz" \) | head -n1)
	if [ -z "$ko" ]; then
		grep -q "/$pat\.ko\$" "$moddir/modules.builtin" 2>/dev/null || die "module $m is neither in $pkg nor built into its kernel"
		return 0
	fi
	case $ko in
	*.xz) need xz xz-utils; xz -dc "$ko" >"$r/lib/modules/$m.ko" ;;
	*) cp "$ko" "$r/lib/modules/$m.ko" ;;
	esac
	echo "$m" >>"$r/lib/modules/$2"
}
for m in $modules; do add_module "$m" load-order; done
for m in $disk_modules; do add_module "$m" disk-order; done

(cd "$r" && find . | sort | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -9n >"$new.initrd.img"
cp "$vmlinuz" "$new.vmlinuz"
mv "$new.vmlinuz" "$out/vmlinuz"
mv "$new.initrd.img" "$out/initrd.img"
write_stamp "$kernel"

size() { du -h "$1" | cut -f1; }
echo "guest built: kernel $release ($pkg $ver), vmlinuz $(size "$out/vmlinuz"), initrd.img $(size "$out/initrd.img") ($(wc -l <"$r/lib/modules/load-order") modules) in $out"
