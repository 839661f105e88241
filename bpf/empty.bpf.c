// SPDX-License-Identifier: (GPL-2.0 OR MIT)
/*
 * The floor for the sensor bench: a tc program that does nothing. Attached
 * the way the counter is (clsact, direct-action, same priority), it measures
 * what tc, the program call and bpf_stats' own clock reads cost on this
 * machine, so the bench can report the counter as what it adds above that.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int vc_empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
