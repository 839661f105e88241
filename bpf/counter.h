/* SPDX-License-Identifier: (GPL-2.0 OR MIT) */
/*
 * Map layouts shared by counter.bpf.c and the TypeScript decoder
 * (src/sensor/layout.ts, checked against this file's BTF by a test).
 * Changing a layout means a new pin directory version (VC_LAYOUT_VERSION):
 * an agent never reads maps pinned by another layout.
 */
#ifndef VC_COUNTER_H
#define VC_COUNTER_H

#define VC_LAYOUT_VERSION 3
#define VC_MAX_TAPS 4096 /* slots; slot 0 is never handed out, so 4,095 taps */
#define VC_MAX_FLOWS 131072

/* Direction seen from the VM. */
enum vc_dir {
	VC_DIR_RX = 0, /* the VM received it (tc egress of its tap) */
	VC_DIR_TX = 1, /* the VM sent it (tc ingress of its tap) */
};

enum vc_family {
	VC_FAMILY_OTHER = 0, /* not IP: ARP and others, keyed by ethertype */
	VC_FAMILY_IPV4 = 4,
	VC_FAMILY_IPV6 = 6,
};

/* One counter per (VM, peer, direction); never keyed by tap or ifindex. */
struct vc_key {
	__u32 vm;        /* VM id user space gave the tap's slot in vc_slots */
	__u8 dir;        /* enum vc_dir */
	__u8 family;     /* enum vc_family */
	__u16 ethertype; /* host byte order */
	__u8 peer[16];   /* IPv4 in the first 4 bytes, IPv6 in all 16; for ARP the sender's IPv4 address; zero for other frames */
};

/* One CPU's share in the per-CPU flow maps (user space sums them), or the whole count in the shared ones. */
struct vc_counts {
	__u64 packets; /* wire packets: a GSO super-packet counts max(1, gso_segs) */
	__u64 bytes;   /* wire bytes: headers counted once per segment */
};

/*
 * One CPU's last flow in one direction (vc_cache): counts not yet added into
 * the flow map. packets == 0 marks an empty entry.
 */
struct vc_cached {
	struct vc_key key;
	struct vc_counts counts;
};

/*
 * A tap's slot in vc_slots. User space gives every tap it attaches a slot and
 * passes the slot number as the tc filter's classid, which the kernel hands
 * to the program in skb->tc_classid: the VM is found by index, not by hashing
 * the ifindex. ifindex guards against a filter left on a device whose slot
 * was given to another tap since; 0 marks a free slot.
 */
struct vc_slot {
	__u32 vm;
	__u32 ifindex;
};

/* Indexes of vc_stats: events that must never pass silently. */
enum vc_stat {
	VC_STAT_FULL = 0,        /* a new flow found the active map full: its packets counted here only */
	VC_STAT_FULL_BYTES = 1,
	VC_STAT_UNKNOWN_TAP = 2, /* a packet on a tap whose slot is free or holds another ifindex */
	VC_STAT_MAX = 8,
};

#endif
