#!/bin/sh
# One idempotent set-up for a Debian 12 machine, as root: system packages,
# npm dependencies, BPF objects, TypeScript, the lab's guest image and WAN
# delay line, and `virt-cohort` on the PATH. A second run only checks.
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUIET=0
[ "${1:-}" = "--quiet" ] && QUIET=1
say() { [ "$QUIET" = 1 ] || echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }
START=$(date +%s)

[ "$(id -u)" = 0 ] || die "run as root (it installs Debian packages and builds the lab): sudo npm run setup"
[ -r /etc/debian_version ] || die "this set-up targets Debian 12; on another system install the packages listed in src/setup.sh by hand"

# What the project runs or builds against; each is used somewhere in src/ or test/.
PACKAGES="clang llvm libbpf-dev bpftool iproute2 iptables libpcap-dev redis-server redis-sentinel redis-tools
libvirt-daemon-system libvirt-clients libvirt-dev qemu-system-x86 busybox-static
libnetfilter-queue-dev gcc libc6-dev make g++ python3 pkg-config iputils-ping util-linux xz-utils ca-certificates
iperf3 dpkg-dev lintian chromium gnutls-bin"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing Debian packages:$missing"
  # Package scripts must not start system-wide daemons (a Redis on 6379, a
  # libvirtd): the lab and the tests start their own, each on its own names.
  POLICY=/usr/sbin/policy-rc.d
  ADDED_POLICY=0
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"; chmod +x "$POLICY"; ADDED_POLICY=1
  fi
  trap '[ "$ADDED_POLICY" = 1 ] && rm -f "$POLICY"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed: check the machine reaches Debian's mirrors"
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null || die "apt-get install failed for:$missing"
fi

# npm ci only when the lock file changed since the last install.
LOCKSUM=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.virt-cohort-lock 2>/dev/null || true)" != "$LOCKSUM" ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$LOCKSUM" > node_modules/.virt-cohort-lock
fi

say "building TypeScript"
npx --no-install tsc -p .
chmod +x dist/src/cli/main.js

if ls bpf/*.bpf.c >/dev/null 2>&1; then
  say "building BPF objects"
  make -s -C bpf OUT="$ROOT/dist/bpf"
fi
say "building the libpcap reader (the fallback sensor)"
make -s -C src/sensor/native OUT="$ROOT/dist/native"

# The sensor pins its maps on the BPF filesystem; a machine without systemd has none mounted.
if ! awk '$2 == "/sys/fs/bpf" && $3 == "bpf" { found = 1 } END { exit !found }' /proc/self/mounts; then
  mount -t bpf bpf /sys/fs/bpf || die "cannot mount the BPF filesystem at /sys/fs/bpf: mount -t bpf bpf /sys/fs/bpf (in a container: give it CAP_SYS_ADMIN)"
  echo "setup: mounted the BPF filesystem at /sys/fs/bpf (it was missing)"
fi

say "building the lab's guest image and WAN delay line"
# The guest kernel comes from Debian's archive: its package lists must be there.
if [ ! -f dist/guest/initrd.img ] && ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
  apt-get update -qq || die "apt-get update failed: the guest image needs Debian's linux-image-amd64"
fi
sh src/lab/guest/build.sh "$ROOT/dist/guest"
sh src/lab/wan/build.sh "$ROOT/dist/bin"

# `virt-cohort` on the PATH, pointing at this checkout.
BIN="$(npm prefix -g 2>/dev/null)/bin/virt-cohort"
if [ "$(readlink -f "$BIN" 2>/dev/null || true)" != "$ROOT/dist/src/cli/main.js" ]; then
  ln -sf "$ROOT/dist/src/cli/main.js" "$BIN"
  say "linked $BIN -> $ROOT/dist/src/cli/main.js"
fi

say "done in $(( $(date +%s) - START )) s"
