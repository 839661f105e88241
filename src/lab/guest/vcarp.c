/*
 * vcarp: ARP announcements from a lab guest, for the tests of the agent's
 * address book (a guest must not take another VM's address by announcing it).
 *
 *   vcarp NIC as IP COUNT       announce IP as this guest's, COUNT times, one a second
 *   vcarp NIC random COUNT      announce COUNT random 10.x.y.z addresses, at once
 *
 * Each announcement is a gratuitous ARP request (sender = target = the
 * address) from this NIC's MAC, broadcast, as a guest would send it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

static int fd;
static struct sockaddr_ll to;
static uint8_t mac[6];

static int announce(uint32_t ip)
{
	uint8_t f[60] = { 0 };
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x06;                  /* ARP */
	f[14] = 0, f[15] = 1, f[16] = 8, f[17] = 0;  /* Ethernet, IPv4 */
	f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1;  /* lengths, request */
	memcpy(f + 22, mac, 6);
	memcpy(f + 28, &ip, 4);
	memcpy(f + 38, &ip, 4);
	return sendto(fd, f, sizeof(f), 0, (struct sockaddr *)&to, sizeof(to)) == sizeof(f) ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 5 && !(argc == 4 && !strcmp(argv[2], "random"))) {
		fprintf(stderr, "usage: vcarp NIC as IP COUNT | vcarp NIC random COUNT\n");
		return 2;
	}
	fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ARP));
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
	if (fd < 0 || ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		perror("vcarp: socket or MAC");
		return 1;
	}
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	to.sll_family = AF_PACKET;
	to.sll_protocol = htons(ETH_P_ARP);
	to.sll_ifindex = (int)if_nametoindex(argv[1]);
	to.sll_halen = 6;
	memset(to.sll_addr, 0xff, 6);
	long count = atol(argv[argc - 1]);
	int bad = 0;
	if (!strcmp(argv[2], "as")) {
		struct in_addr a;
		if (!inet_aton(argv[3], &a)) {
			fprintf(stderr, "vcarp: '%s' is not an IPv4 address\n", argv[3]);
			return 2;
		}
		for (long i = 0; i < count; i++) {
			bad |= announce(a.s_addr);
			if (i + 1 < count)
				sleep(1);
		}
	} else {
		for (long i = 0; i < count; i++) {
			uint32_t r;
			if (getrandom(&r, sizeof(r), 0) != sizeof(r))
				return 1;
			bad |= announce(htonl(0x0a000000u | (r & 0x00ffffffu)));
		}
	}
	printf("VCARP done %s %ld\n", argv[2], count);
	return bad ? 1 : 0;
}
