// SPDX-License-Identifier: (GPL-2.0 OR MIT)
/*
 * Counts every frame on a VM tap per (VM, peer, direction), in the kernel.
 *
 * Two kinds of flow map: IPv4 frames (by far the usual case) count under a
 * 12-byte key (struct vc_key4) in vc_counts4_0/1, everything else (IPv6, ARP,
 * other ethertypes) under the 24-byte struct vc_key in vc_counts0/1. Built
 * with -DVC_KEY24_ONLY, IPv4 goes into the 24-byte maps as before the compact
 * key (counter-key24.bpf.o: the same maps, the IPv4 ones left empty, so the
 * sensor opens it alike; the bench runs it beside this one).
 *
 * Why a double buffer: at a period boundary user space flips the programs to
 * the other pair of count maps and drains the old pair alone, with no writer
 * left. Each packet lands in exactly one map: nothing lost, nothing counted
 * twice, and the maps empty every period, which bounds them by one period's
 * peers rather than by history.
 *
 * One atomic flip for both kinds of map: vc_gen holds the generation (0 or
 * 1), and vc_active / vc_active4 hold both generations' maps of each kind,
 * fixed at load. A packet reads vc_gen once and counts into the maps of that
 * generation, whichever kind it needs: user space flips by writing vc_gen
 * alone, so no packet can count into the new IPv4 map and the old IPv6 one
 * (two outer maps of one entry each, updated one after the other, would let
 * the two kinds cross the period boundary a grace period apart). Writing an
 * array element does not wait for the programs, so user space then rewrites
 * an entry of vc_active4 with the map it already holds: an update of a
 * map-in-map returns only after an RCU grace period, i.e. once every program
 * that could have read the old generation has finished. Only then does it
 * drain the old generation's maps.
 *
 * Why per-CPU flow maps: every CPU adds into its own copy of a flow's
 * counters, so the adds need no atomic instruction and no cache line moves
 * between CPUs; user space sums the copies when it drains a map, which the
 * double buffer already gives it alone. Built with -DVC_SHARED_MAPS, the flow
 * maps are shared hashes with atomic adds, for a kernel that refuses per-CPU
 * hash maps (counter-shared.bpf.o; the counts are the same).
 *
 * The hot path per packet: read the slot from skb->tc_classid, one array
 * lookup (inlined by the verifier: no hashing), the generation (an inlined
 * array lookup), one inlined lookup of the active map, one hash lookup of the
 * flow, two plain adds.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "counter.h"

#ifdef VC_SHARED_MAPS
#define VC_FLOW_MAP BPF_MAP_TYPE_HASH
#else
#define VC_FLOW_MAP BPF_MAP_TYPE_PERCPU_HASH
#endif

/* Slot (the filter's classid) -> VM; an array, so the lookup is an index, not a hash. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VC_MAX_TAPS);
	__type(key, __u32);
	__type(value, struct vc_slot);
} vc_slots SEC(".maps");

struct vc_count_map {
	__uint(type, VC_FLOW_MAP);
	__uint(max_entries, VC_MAX_FLOWS);
	__type(key, struct vc_key);
	__type(value, struct vc_counts);
};

struct vc_count_map4 {
	__uint(type, VC_FLOW_MAP);
	__uint(max_entries, VC_MAX_FLOWS);
	__type(key, struct vc_key4);
	__type(value, struct vc_counts);
};

struct vc_count_map vc_counts0 SEC(".maps");
struct vc_count_map vc_counts1 SEC(".maps");
struct vc_count_map4 vc_counts4_0 SEC(".maps");
struct vc_count_map4 vc_counts4_1 SEC(".maps");

/* Generation -> flow maps of that generation, fixed at load; user space never changes what they point at. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vc_count_map);
} vc_active SEC(".maps") = {
	.values = { [0] = &vc_counts0, [1] = &vc_counts1 },
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vc_count_map4);
} vc_active4 SEC(".maps") = {
	.values = { [0] = &vc_counts4_0, [1] = &vc_counts4_1 },
};

/* The generation being counted into: 0 or 1, the one word user space writes to flip. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} vc_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VC_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} vc_stats SEC(".maps");

/*
 * What user space has already reported of vc_stats (which only grows); kept
 * pinned so a restarted agent reports each overflow once. Programs never touch it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VC_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} vc_reported SEC(".maps");

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&vc_stats, &idx);
	if (v)
		__sync_fetch_and_add(v, n);
}

/* Header bytes repeated on every segment of a GSO packet. */
static __always_inline __u32 l4_header_len(void *l4, void *end, __u8 proto)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > end)
			return 0;
		return th->doff * 4;
	}
	if (proto == IPPROTO_UDP)
		return sizeof(struct udphdr);
	return 0;
}

static __always_inline void add(struct vc_counts *c, __u32 segs, __u64 bytes)
{
#ifdef VC_SHARED_MAPS
	__sync_fetch_and_add(&c->packets, segs);
	__sync_fetch_and_add(&c->bytes, bytes);
#else
	/*
	 * This CPU's copy: tc programs run with bottom halves off and cannot
	 * be preempted by another tc program on the same CPU, so plain adds are exact.
	 */
	c->packets += segs;
	c->bytes += bytes;
#endif
}

/*
 * Counts a frame into `counts` (a flow map of either kind). A new flow goes
 * in with this packet already counted: no second lookup after the insert.
 */
static __always_inline int count_into(void *counts, void *key, __u32 segs, __u64 bytes)
{
	struct vc_counts *c = bpf_map_lookup_elem(counts, key);
	if (c) {
		add(c, segs, bytes);
		return TC_ACT_OK;
	}
	struct vc_counts init = { .packets = segs, .bytes = bytes };
	if (!bpf_map_update_elem(counts, key, &init, BPF_NOEXIST))
		return TC_ACT_OK;
	/* Another CPU created it meanwhile (its copy for this CPU starts at 0), or the map is full. */
	c = bpf_map_lookup_elem(counts, key);
	if (c) {
		add(c, segs, bytes);
		return TC_ACT_OK;
	}
	stat_add(VC_STAT_FULL, segs);
	stat_add(VC_STAT_FULL_BYTES, bytes);
	return TC_ACT_OK;
}

static __always_inline int count(struct __sk_buff *skb, __u8 dir)
{
	/* cls_bpf puts the filter's classid here before the run. */
	__u32 slot = skb->tc_classid;
	/* Cleared so that what tc makes of it afterwards (skb->tc_index) stays 0, as with no classid. */
	skb->tc_classid = 0;
	struct vc_slot *tap = bpf_map_lookup_elem(&vc_slots, &slot);
	if (!tap || !tap->ifindex || tap->ifindex != skb->ifindex) {
		stat_add(VC_STAT_UNKNOWN_TAP, 1);
		return TC_ACT_OK;
	}

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	__u32 segs = skb->gso_segs > 1 ? skb->gso_segs : 1;
	__u64 bytes = skb->len;
	__u32 zero = 0;
	/* One read of the generation per packet: both kinds of map flip with it (see the top). */
	__u32 *gen = bpf_map_lookup_elem(&vc_gen, &zero);
	if (!gen)
		return TC_ACT_OK;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return TC_ACT_OK;
		__u32 peer = dir == VC_DIR_TX ? ip->daddr : ip->saddr;
		/*
		 * Header bytes repeated per segment: only a GSO packet needs them,
		 * so a plain frame skips reading the IP and L4 headers' lengths.
		 */
		if (segs > 1) {
			__u32 ihl = ip->ihl * 4;
			if (ihl >= sizeof(*ip) && (void *)ip + ihl <= end)
				bytes += (__u64)(segs - 1) * (sizeof(*eth) + ihl + l4_header_len((void *)ip + ihl, end, ip->protocol));
		}
#ifndef VC_KEY24_ONLY
		struct vc_key4 key4 = { .vm = tap->vm, .peer = peer, .dir = dir };
		void *counts4 = bpf_map_lookup_elem(&vc_active4, gen);
		if (!counts4)
			return TC_ACT_OK;
		return count_into(counts4, &key4, segs, bytes);
#else
		struct vc_key key = { .vm = tap->vm, .dir = dir, .family = VC_FAMILY_IPV4, .ethertype = ETH_P_IP };
		__builtin_memcpy(key.peer, &peer, 4);
		void *counts = bpf_map_lookup_elem(&vc_active, gen);
		if (!counts)
			return TC_ACT_OK;
		return count_into(counts, &key, segs, bytes);
#endif
	}

	struct vc_key key = {};
	key.vm = tap->vm;
	key.dir = dir;
	key.ethertype = bpf_ntohs(eth->h_proto);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return TC_ACT_OK;
		key.family = VC_FAMILY_IPV6;
		__builtin_memcpy(key.peer, dir == VC_DIR_TX ? &ip6->daddr : &ip6->saddr, 16);
		if (segs > 1)
			bytes += (__u64)(segs - 1) * (sizeof(*eth) + sizeof(*ip6) + l4_header_len(ip6 + 1, end, ip6->nexthdr));
	} else {
		key.family = VC_FAMILY_OTHER;
		/*
		 * ARP for IPv4 over Ethernet: keep the sender's IPv4 address. A VM
		 * announces its own address in every ARP it sends, which is how the
		 * agent learns which address is which VM, at no cost on the IP path.
		 */
		if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
			__u8 *arp = (void *)(eth + 1);
			if ((void *)(arp + 28) <= end && arp[4] == 6 && arp[5] == 4)
				__builtin_memcpy(key.peer, arp + 14, 4);
		}
	}
	void *counts = bpf_map_lookup_elem(&vc_active, gen);
	if (!counts)
		return TC_ACT_OK;
	return count_into(counts, &key, segs, bytes);
}

SEC("tc")
int vc_from_vm(struct __sk_buff *skb)
{
	return count(skb, VC_DIR_TX);
}

SEC("tc")
int vc_to_vm(struct __sk_buff *skb)
{
	return count(skb, VC_DIR_RX);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
