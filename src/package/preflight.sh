#!/bin/sh
# ExecStartPre of the virt-cohort units: what a restart cannot fix is checked
# here, and each failure says what to type. Runs with the unit's capability
# set, so it sees what the agent will get. Exit 0: go on; exit 1: do not start
# (systemd retries a few times, then leaves the unit failed with this message).
set -eu

ROLE=${1:-agent}
CONFIG=${VIRT_COHORT_CONFIG:-/etc/virt-cohort/config.yaml}
UNIT="virt-cohort-$ROLE"
failed=0
fail() { echo "$UNIT: $*" >&2; failed=1; }
warn() { echo "$UNIT: warning: $*" >&2; }

# Node.js 20 or later (the dependency says so, but node may be replaced by hand).
if ! major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null); then
  fail "node is not on the PATH: install Node.js 20 or later (apt-get install nodejs)"
elif [ "$major" -lt 20 ]; then
  fail "Node.js $(node --version) is too old: virt-cohort needs 20 or later (NodeSource's nodejs 20.x package)"
fi

if [ ! -r "$CONFIG" ]; then
  fail "the configuration $CONFIG is missing: restore the default with 'apt-get install --reinstall -o Dpkg::Options::=--force-confmiss virt-cohort', then edit it"
fi

# A setting in the YAML file, taken from its first non-comment line (enough for
# the decisions below; the program itself validates the whole file).
setting() { [ -r "$CONFIG" ] && sed -n "s/^[[:space:]]*$1:[[:space:]]*['\"]\{0,1\}\([^'\" #]*\).*/\1/p" "$CONFIG" | head -n 1; }

if [ "$ROLE" = agent ]; then
  caps=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
  has() { [ $(( (0x$caps >> $1) & 1 )) = 1 ]; }
  missing=""
  for c in CAP_BPF:39 CAP_PERFMON:38 CAP_NET_ADMIN:12; do
    has "${c#*:}" || missing="$missing ${c%:*}"
  done
  sensor=$(setting sensor)
  if [ -n "$missing" ] && [ "$sensor" != pcap ]; then
    fail "the eBPF sensor needs$missing, which this service does not have. The unit grants them in CapabilityBoundingSet=; a drop-in, a container or a security policy removed them: see 'systemctl cat $UNIT'. Restore them (systemctl revert $UNIT), or set 'sensor: pcap' in $CONFIG (counts with libpcap, needs CAP_NET_RAW only)"
  fi
  if ! has 13; then
    if [ "$sensor" = pcap ]; then fail "the pcap sensor needs CAP_NET_RAW, which this service does not have: see 'systemctl cat $UNIT'"
    else warn "no CAP_NET_RAW: the libpcap fallback will not work if eBPF does"; fi
  fi
  if [ "$sensor" != pcap ] && ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
    warn "bpffs is not mounted at /sys/fs/bpf: mount it (mount -t bpf bpf /sys/fs/bpf) or the agent falls back to libpcap"
  fi
  # A local libvirt URI (the default) needs libvirt's socket on this host.
  uri=$(setting libvirtUri)
  case "${uri:-qemu:///system}" in
    qemu:///system|qemu:///session)
      if [ ! -S /run/libvirt/libvirt-sock ] && [ ! -S /run/libvirt/virtqemud-sock ] && [ ! -S /run/libvirt/libvirt-sock-ro ]; then
        if command -v libvirtd >/dev/null 2>&1 || command -v virtqemud >/dev/null 2>&1; then
          warn "libvirt does not run yet (no socket in /run/libvirt): start it (systemctl start libvirtd)"
        else
          fail "libvirt is not installed on this host, and the agent counts the traffic of its VMs: install it (apt-get install libvirt-daemon-system), or point libvirtUri in $CONFIG at this host's hypervisor"
        fi
      fi
      ;;
  esac
fi

if [ "$failed" = 1 ]; then
  echo "$UNIT: not starting. After fixing: systemctl reset-failed $UNIT && systemctl start $UNIT" >&2
  exit 1
fi
exit 0
