#!/bin/sh
# /init of the lab guest (busybox sh, PID 1). The kernel command line says who
# we are and whom to talk to:
#   vc.name=vm3 vc.ip=10.77.200.3/24 vc.peers=10.77.200.1,10.77.200.2 vc.rate=50 vc.size=256 vc.port=7000
# No or empty vc.peers: idle, only receive.
# PID 1 must never exit (the kernel would panic), so every failure ends in rescue.
export PATH=/bin

mount -t devtmpfs dev /dev 2>/dev/null
# Without a /dev/console in the archive the kernel hands us no stdio at all.
exec </dev/console >/dev/console 2>&1

rescue() {
	echo "VCGUEST error: $*"
	# stdin may be at EOF (console logged to a file), so respawn slowly rather than spin.
	while :; do
		setsid cttyhack sh
		sleep 1
	done
}

mount -t proc proc /proc || rescue "cannot mount /proc"
mount -t sysfs sys /sys || rescue "cannot mount /sys"

for m in $(cat /lib/modules/load-order); do
	insmod "/lib/modules/$m.ko" || rescue "insmod $m failed"
done

name=guest ip='' peers='' rate=20 size=256 port=7000 arp='' root=''
for w in $(cat /proc/cmdline); do
	case $w in
	vc.root=*) root=${w#*=} ;;
	vc.name=*) name=${w#*=} ;;
	vc.ip=*) ip=${w#*=} ;;
	vc.peers=*) peers=${w#*=} ;;
	vc.rate=*) rate=${w#*=} ;;
	vc.size=*) size=${w#*=} ;;
	vc.port=*) port=${w#*=} ;;
	vc.arp=*) arp=${w#*=} ;;
	esac
done
# A guest with a root disk (the Debian image): mount it and hand over to its vc-init.
if [ -n "$root" ]; then
	for m in $(cat /lib/modules/disk-order); do
		insmod "/lib/modules/$m.ko" || rescue "insmod $m failed"
	done
	tries=0
	while [ ! -b "$root" ]; do
		tries=$((tries + 1))
		[ $tries -le 50 ] || rescue "no disk $root appeared (is it a virtio disk?)"
		usleep 100000
	done
	mkdir -p /newroot
	mount -t ext4 -o ro "$root" /newroot || rescue "cannot mount $root"
	[ -x /newroot/usr/local/sbin/vc-init ] || rescue "$root has no /usr/local/sbin/vc-init: is it the lab's Debian image?"
	mount --move /dev /newroot/dev
	umount /proc /sys
	exec switch_root /newroot /usr/local/sbin/vc-init
fi

case $ip in
*.*.*.*/*) ;;
*) rescue "vc.ip must be ADDRESS/PREFIX on the kernel command line (got '$ip')" ;;
esac

# The first virtio NIC is the one with the lowest ifindex bound to virtio_net;
# its name is whatever the kernel chose (no udev here).
find_nic() {
	best='' best_idx=''
	for d in /sys/class/net/*; do
		drv=$(readlink "$d/device/driver" 2>/dev/null) || continue
		[ "${drv##*/}" = virtio_net ] || continue
		idx=$(cat "$d/ifindex")
		if [ -z "$best_idx" ] || [ "$idx" -lt "$best_idx" ]; then
			best=${d##*/} best_idx=$idx
		fi
	done
	echo "$best"
}
# Probing is normally done by the time insmod returns; allow for async probe.
tries=0
while nic=$(find_nic) && [ -z "$nic" ]; do
	tries=$((tries + 1))
	[ $tries -le 50 ] || rescue "no virtio network interface appeared (is the NIC model virtio-net-pci?)"
	usleep 100000
done

hostname "$name"
ip link set lo up || rescue "cannot bring up lo"
ip addr add "$ip" dev "$nic" || rescue "cannot add $ip to $nic"
ip link set "$nic" up || rescue "cannot bring up $nic"

read -r up _ </proc/uptime
frac=${up#*.}
clock=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)
echo "VCGUEST up name=$name ip=$ip uptime_ms=$((${up%.*} * 1000 + ${frac#0} * 10)) clock=$clock"

# vc.arp=as:IP:COUNT or random:COUNT: ARP announcements for the address-book tests.
if [ -n "$arp" ]; then
	mode=${arp%%:*} rest=${arp#*:}
	if [ "$mode" = as ]; then vcarp "$nic" as "${rest%%:*}" "${rest#*:}" & else vcarp "$nic" random "$rest" & fi
fi

# Run as a child, not exec'd: if vcgen ever exits, PID 1 must survive it.
set -- --name "$name" --port "$port" --rate "$rate" --size "$size"
[ -z "$peers" ] || set -- "$@" --peers "$peers"
vcgen "$@"
rescue "vcgen exited with status $?"
