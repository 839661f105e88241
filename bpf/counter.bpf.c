// SPDX-License-Identifier: (GPL-2.0 OR MIT)
/*
 * Counts every frame on a VM tap per (VM, peer, direction), in the kernel.
 *
 * Why a double buffer: at a period boundary user space flips the programs to
 * the other generation of count maps and drains the old one alone, with no
 * writer left. Each packet lands in exactly one place: nothing lost, nothing
 * counted twice, and the maps empty every period, which bounds them by one
 * period's peers rather than by history.
 *
 * A generation is a flow map (vc_counts0/1, behind vc_active) and the
 * per-CPU last-flow entries of vc_cache that belong to it (2 * gen + dir).
 * Both must flip at once, so the flip is one word: the programs read vc_gen
 * once per packet and touch only that generation's flow map and cache
 * entries. Writing an array element does not wait for the programs, so user
 * space then rewrites an entry of vc_active with the map it already holds: an
 * update of a map-in-map returns only after an RCU grace period, i.e. once
 * every program that could have read the old generation has finished. Only
 * then does it drain the old flow map and take the old cache entries.
 *
 * Why one shared flow map (atomic adds) and not per-CPU flow maps: with the
 * last-flow cache below, a frame that hits the cache never touches the flow
 * map, so atomics remain only on a miss. Side by side in the sensor bench
 * (docs/measurements.md), every frame a miss, the shared map's atomic adds
 * measured no dearer than the per-CPU map's plain adds on this 2-CPU machine.
 * Per-CPU maps cost, per CPU of the host: a copy of every flow's counters
 * that each read copies out and sums (100,000 flows read in about 150 ms here,
 * an estimated 0.6-2.7 s on a 64-CPU host), and preallocated kernel memory
 * (16 B x 131,072 flows x 2 maps per CPU: 256 MiB on 64 CPUs). What atomics
 * cost when many CPUs miss on the same flow at once is not measured here.
 * Built with -DVC_PERCPU_MAPS, the flow maps are per-CPU hashes with plain
 * adds (counter-percpu.bpf.o, which the bench runs beside this one; the
 * counts are the same).
 *
 * Why the last-flow cache: the flow's hash lookup is nearly all of the
 * program's own cost (about 32 of its 35-40 ns above an empty program under
 * BPF_PROG_TEST_RUN here, measured by cutting the program short before it),
 * and a shorter key does not make it cheaper (a 12-byte IPv4 key in maps of
 * its own measured the same: issue 18, git 7efa231). Consecutive frames on a
 * CPU in one direction are mostly of the same flow (a burst, a GRO batch), so
 * each CPU keeps its last flow per direction with its counts in vc_cache
 * (a per-CPU array: an index, no hashing) and adds them into the flow map
 * only when a frame of another flow comes, or user space takes them at the
 * drain. Built with -DVC_NO_CACHE, every frame goes to the flow map
 * (counter-nocache.bpf.o, which the bench runs beside this one).
 *
 * The hot path per packet: read the slot from skb->tc_classid, one array
 * lookup (inlined by the verifier: no hashing), the generation and the cache
 * entry (two inlined array lookups), a 24-byte compare, two plain adds.
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

#ifdef VC_PERCPU_MAPS
#define VC_FLOW_MAP BPF_MAP_TYPE_PERCPU_HASH
#else
#define VC_FLOW_MAP BPF_MAP_TYPE_HASH
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

struct vc_count_map vc_counts0 SEC(".maps");
struct vc_count_map vc_counts1 SEC(".maps");

/* Generation -> its flow map, fixed at load; user space never changes what the entries point at. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct vc_count_map);
} vc_active SEC(".maps") = {
	.values = { [0] = &vc_counts0, [1] = &vc_counts1 },
};

/* The generation being counted into: 0 or 1, the one word user space writes to flip. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} vc_gen SEC(".maps");

/*
 * Each CPU's last flow per generation and direction, at 2 * gen + dir. A
 * per-CPU array in both builds: 4 entries of 40 bytes per CPU, nothing like
 * the per-CPU flow maps' preallocation (Linux 4.6).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct vc_cached);
} vc_cache SEC(".maps");

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

static __always_inline void add(struct vc_counts *c, __u64 segs, __u64 bytes)
{
#ifdef VC_PERCPU_MAPS
	/*
	 * This CPU's copy: tc programs run with bottom halves off and cannot
	 * be preempted by another tc program on the same CPU, so plain adds are exact.
	 */
	c->packets += segs;
	c->bytes += bytes;
#else
	__sync_fetch_and_add(&c->packets, segs);
	__sync_fetch_and_add(&c->bytes, bytes);
#endif
}

/*
 * Adds to a flow in `counts`. A new flow goes in with these counts already
 * added: no second lookup after the insert.
 */
static __always_inline void count_into(void *counts, struct vc_key *key, __u64 segs, __u64 bytes)
{
	struct vc_counts *c = bpf_map_lookup_elem(counts, key);
	if (c) {
		add(c, segs, bytes);
		return;
	}
	struct vc_counts init = { .packets = segs, .bytes = bytes };
	if (!bpf_map_update_elem(counts, key, &init, BPF_NOEXIST))
		return;
	/* Another CPU created it meanwhile (its copy for this CPU starts at 0), or the map is full. */
	c = bpf_map_lookup_elem(counts, key);
	if (c) {
		add(c, segs, bytes);
		return;
	}
	stat_add(VC_STAT_FULL, segs);
	stat_add(VC_STAT_FULL_BYTES, bytes);
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
	/* 8-aligned: compared with the cached key as three 64-bit words. */
	struct vc_key key __attribute__((aligned(8))) = {};
	__u32 hdr = 0;

	key.vm = tap->vm;
	key.dir = dir;
	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	key.ethertype = bpf_ntohs(eth->h_proto);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return TC_ACT_OK;
		key.family = VC_FAMILY_IPV4;
		__builtin_memcpy(key.peer, dir == VC_DIR_TX ? &ip->daddr : &ip->saddr, 4);
		__u32 ihl = ip->ihl * 4;
		if (ihl >= sizeof(*ip) && (void *)ip + ihl <= end)
			hdr = sizeof(*eth) + ihl + l4_header_len((void *)ip + ihl, end, ip->protocol);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return TC_ACT_OK;
		key.family = VC_FAMILY_IPV6;
		__builtin_memcpy(key.peer, dir == VC_DIR_TX ? &ip6->daddr : &ip6->saddr, 16);
		hdr = sizeof(*eth) + sizeof(*ip6) + l4_header_len(ip6 + 1, end, ip6->nexthdr);
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

	__u32 segs = skb->gso_segs;
	/*
	 * A guest's super-packet on its tap (vc_from_vm) has gso_size but no
	 * gso_segs yet: tun leaves it 0 for the stack to compute later
	 * (virtio_net_hdr_to_skb). Count the segments the wire will carry, each
	 * with the headers, as for a super-packet whose gso_segs is known.
	 */
	if (segs <= 1 && skb->gso_size && hdr && skb->len > hdr + skb->gso_size)
		segs = (skb->len - hdr + skb->gso_size - 1) / skb->gso_size;
	if (segs < 1)
		segs = 1;
	__u64 bytes = skb->len + (__u64)(segs - 1) * hdr;

	__u32 zero = 0;
	/* One read of the generation per packet: the flow map and the cache entry flip together (see the top). */
	__u32 *gen = bpf_map_lookup_elem(&vc_gen, &zero);
	if (!gen)
		return TC_ACT_OK;
	__u32 g = *gen & 1;
#ifndef VC_NO_CACHE
	__u32 at = 2 * g + dir;
	struct vc_cached *last = bpf_map_lookup_elem(&vc_cache, &at);
	if (!last)
		return TC_ACT_OK;
	__u64 *a = (__u64 *)&last->key, *b = (__u64 *)&key;
	/*
	 * The same flow as this CPU's last frame this way: counted in the cache
	 * (this CPU's own entry; no other tc program runs on this CPU meanwhile).
	 */
	if (a[0] == b[0] && a[1] == b[1] && a[2] == b[2]) {
		last->counts.packets += segs;
		last->counts.bytes += bytes;
		return TC_ACT_OK;
	}
#endif
	void *counts = bpf_map_lookup_elem(&vc_active, &g);
	if (!counts)
		return TC_ACT_OK;
#ifndef VC_NO_CACHE
	/* Another flow: the last one's counts go into the flow map, and this frame's flow takes its place. */
	if (last->counts.packets)
		count_into(counts, &last->key, last->counts.packets, last->counts.bytes);
	__builtin_memcpy(&last->key, &key, sizeof(key));
	last->counts.packets = segs;
	last->counts.bytes = bytes;
	return TC_ACT_OK;
#else
	count_into(counts, &key, segs, bytes);
	return TC_ACT_OK;
#endif
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
