/*
 * vc-wandelay: a one-way delay line for the lab's inter-site WAN router.
 *
 * The kernel here has no netem, so the router sends forwarded packets to an
 * NFQUEUE and this program hands each one back (NF_ACCEPT) a fixed delay
 * after it arrived. Because the delay is constant, packets fall due in the
 * order they came, so a FIFO of (id, due time) is all the state needed, and
 * one batch verdict ("accept every id up to X") releases everything due.
 *
 *   vc-wandelay --queue N --delay-ms D [--pidfile FILE]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* Matches the kernel queue length, so the FIFO only overflows if the kernel
 * queue itself could not have held the packets. */
#define QUEUE_MAXLEN 65536u
#define FIFO_SIZE    65536u /* power of two */
#define RCVBUF_BYTES (64 * 1024 * 1024)
#define STATS_NS     (10 * 1000000000ull)
/* Bounded so a flood of arrivals cannot starve the verdicts that are due. */
#define READ_BATCH   256

struct held { uint32_t id; uint64_t due; };

static struct held fifo[FIFO_SIZE];
static uint32_t head, count;
static uint64_t delay_ns, packets, early, max_held, recv_errors;
static unsigned queue_num, delay_ms;
static struct nfq_q_handle *qh;
static uint64_t arrival; /* time of the recv() that delivered the current packet */
static volatile sig_atomic_t got_term, got_usr1;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *hint)
{
	fprintf(stderr, "wandelay: cannot %s NFQUEUE %u (%s)%s%s\n", what, queue_num,
		errno ? strerror(errno) : "no reason given", hint ? ": " : "", hint ? hint : "");
	exit(1);
}

static void accept_upto(uint32_t id)
{
	/* A lost verdict would strand the packet in the kernel until we exit;
	 * say so rather than silently leaking. */
	if (nfq_set_verdict_batch(qh, id, NF_ACCEPT) < 0)
		fprintf(stderr, "wandelay: verdict for id %" PRIu32 " failed: %s\n", id, strerror(errno));
}

/* Releases the due prefix of the FIFO with a single verdict. */
static void release(uint64_t now, int all)
{
	uint32_t n = 0;
	while (n < count && (all || fifo[(head + n) & (FIFO_SIZE - 1)].due <= now))
		n++;
	if (n == 0)
		return;
	accept_upto(fifo[(head + n - 1) & (FIFO_SIZE - 1)].id);
	head = (head + n) & (FIFO_SIZE - 1);
	count -= n;
}

static int on_packet(struct nfq_q_handle *q, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
	(void)q; (void)msg; (void)data;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	if (!ph)
		return 0;
	if (count == FIFO_SIZE) {
		accept_upto(fifo[head].id);
		head = (head + 1) & (FIFO_SIZE - 1);
		count--;
		early++;
	}
	fifo[(head + count) & (FIFO_SIZE - 1)] = (struct held){ ntohl(ph->packet_id), arrival + delay_ns };
	count++;
	packets++;
	if (count > max_held)
		max_held = count;
	return 0;
}

static void print_stats(void)
{
	fprintf(stderr, "wandelay queue=%u delay_ms=%u packets=%" PRIu64 " held=%" PRIu32
		" early=%" PRIu64 " max_held=%" PRIu64 "%s\n", queue_num, delay_ms, packets, count,
		early, max_held, recv_errors ? " (netlink receive errors seen)" : "");
}

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else
		got_term = 1;
}

/* Reads what is waiting on the socket; returns 0 once it would block. */
static int drain(struct nfq_handle *h, int fd, char *buf, size_t len)
{
	for (int i = 0; i < READ_BATCH; i++) {
		ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return 0;
			/* ENOBUFS should not happen with NETLINK_NO_ENOBUFS; survive it anyway. */
			recv_errors++;
			return 0;
		}
		arrival = now_ns();
		nfq_handle_packet(h, buf, (int)n);
	}
	return 1;
}

static unsigned parse_uint(const char *s, const char *what, unsigned max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s ? s : "", &end, 10);
	if (!s || !*s || *end || errno || v > max || s[0] == '-') {
		fprintf(stderr, "wandelay: %s must be an integer from 0 to %u, got '%s'\n", what, max, s ? s : "");
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	const char *pidfile = NULL;
	int have_queue = 0, have_delay = 0;
	for (int i = 1; i < argc; i++) {
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--queue")) {
			queue_num = parse_uint(next, "--queue", 65535); have_queue = 1; i++;
		} else if (!strcmp(argv[i], "--delay-ms")) {
			delay_ms = parse_uint(next, "--delay-ms", 600000); have_delay = 1; i++;
		} else if (!strcmp(argv[i], "--pidfile") && next) {
			pidfile = next; i++;
		} else {
			fprintf(stderr, "wandelay: unexpected argument '%s'\n", argv[i]);
			have_queue = 0; break;
		}
	}
	if (!have_queue || !have_delay) {
		fprintf(stderr, "usage: vc-wandelay --queue N --delay-ms D [--pidfile FILE]\n");
		return 2;
	}
	delay_ns = (uint64_t)delay_ms * 1000000ull;
	/* The default 50 us timer slack would add to every packet's delay. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

	/* Signals stay blocked except inside ppoll(), so none can slip in between
	 * checking the flags and going to sleep. */
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);

	struct nfq_handle *h = nfq_open();
	if (!h)
		die("open a netlink socket for", "it needs root or CAP_NET_ADMIN");
	errno = 0;
	qh = nfq_create_queue(h, (uint16_t)queue_num, on_packet, NULL);
	if (!qh)
		die("bind", "is another delay line bound to it?");
	if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0)
		die("set metadata-only copy mode on", NULL);
	if (nfq_set_queue_maxlen(qh, QUEUE_MAXLEN) < 0)
		die("set the length of", NULL);
	/* We never look at payloads, so let GSO packets through whole instead of
	 * having the kernel segment them: far fewer packets per byte. Old kernels
	 * lack the flag, which only costs speed. */
	nfq_set_queue_flags(qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO);

	int fd = nfq_fd(h);
	int rcvbuf = RCVBUF_BYTES, one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	/* Without this one socket overrun makes recv() fail with ENOBUFS; we would
	 * rather carry on (the overrun packets wait for the next batch verdict). */
	setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

	if (pidfile) {
		FILE *f = fopen(pidfile, "w");
		if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
			fprintf(stderr, "wandelay: cannot write pid file %s: %s\n", pidfile, strerror(errno));
			nfq_destroy_queue(qh);
			nfq_close(h);
			return 1;
		}
	}
	printf("wandelay ready queue=%u delay_ms=%u\n", queue_num, delay_ms);
	fflush(stdout);

	static char buf[65536] __attribute__((aligned));
	uint64_t next_stats = now_ns() + STATS_NS;
	while (!got_term) {
		uint64_t now = now_ns();
		release(now, 0);
		if (got_usr1 || now >= next_stats) {
			print_stats();
			got_usr1 = 0;
			next_stats = now + STATS_NS;
		}
		uint64_t wake = next_stats;
		if (count && fifo[head].due < wake)
			wake = fifo[head].due;
		uint64_t wait = wake > now ? wake - now : 0;
		struct timespec ts = { (time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull) };
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = ppoll(&pfd, 1, &ts, &waitmask);
		if (r < 0 && errno != EINTR) {
			fprintf(stderr, "wandelay: poll failed: %s\n", strerror(errno));
			break;
		}
		if (r > 0)
			drain(h, fd, buf, sizeof buf);
	}

	/* Unbinding drops whatever is still queued, so read what is waiting and
	 * let all of it go first. */
	while (drain(h, fd, buf, sizeof buf))
		;
	release(0, 1);
	print_stats();
	nfq_destroy_queue(qh);
	nfq_close(h);
	if (pidfile)
		unlink(pidfile);
	return got_term ? 0 : 1;
}
