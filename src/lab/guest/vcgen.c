/*
 * vcgen: the lab guest's traffic generator and receiver.
 *
 *   vcgen --name N [--port 7000] [--rate 20] [--size 256] [--peers ip,ip,...]
 *
 * Sends `rate` UDP datagrams/s of exactly `size` payload bytes to each peer and
 * accounts for what arrives from anyone, printing one VCGEN JSON line a second
 * on stdout (the guest's serial console), which the host side parses.
 *
 * Single-threaded: one nonblocking socket plus one absolute CLOCK_MONOTONIC
 * timerfd in poll(). A timerfd rather than clock_nanosleep(TIMER_ABSTIME) so
 * that the receiver is woken per datagram and inter-arrival gaps stay accurate
 * even between sends (or with no peers at all).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL
#define MAX_PEERS 64
#define MAX_SRCS 64
#define MAX_RATE_TOTAL 1000000 /* keeps the catch-up spacing (period/2) >= 500 ns */
#define MAX_SIZE 65507         /* largest IPv4 UDP payload */

/*
 * Payload header, big-endian:
 *   0  "VCG1"
 *   4  u32 epoch: random per run, so a restarted sender (seq back at 0) is not
 *      mistaken for reordering or a huge loss
 *   8  u64 seq: per (sender, receiver), starting at 0
 *   16 name[16]: sender name, NUL-padded (truncated), for humans reading dumps
 */
#define HDR_LEN 32
#define HDR_NAME 16

struct peer {
	struct sockaddr_in sa;
	char ip[INET_ADDRSTRLEN];
	uint64_t seq, n, bytes, err;
};

struct src {
	uint32_t addr; /* network order */
	char ip[INET_ADDRSTRLEN];
	char name[HDR_NAME + 1];
	uint32_t epoch;
	/* Loss in the current epoch is (top - first + 1) - n_epoch: this tolerates
	 * reordering, and counts nothing from before we started listening. */
	uint64_t first, top, n_epoch, lost_before;
	uint64_t n, bytes;
	int64_t last_ns, gap_ns, maxgap_ns;
};

static struct peer peers[MAX_PEERS];
static int npeers;
static struct src srcs[MAX_SRCS];
static int nsrcs;
static uint64_t ignored; /* not ours, or from more sources than we track */

static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("vcgen: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

static long num_arg(const char *opt, const char *v, long lo, long hi)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		die("%s must be an integer from %ld to %ld (got '%s')", opt, lo, hi, v);
	return x;
}

static void parse_peers(const char *list)
{
	char *copy = strdup(list), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (npeers == MAX_PEERS)
			die("at most %d peers", MAX_PEERS);
		struct peer *p = &peers[npeers];
		p->sa.sin_family = AF_INET;
		if (inet_pton(AF_INET, tok, &p->sa.sin_addr) != 1)
			die("peer '%s' is not an IPv4 address", tok);
		for (int i = 0; i < npeers; i++)
			if (peers[i].sa.sin_addr.s_addr == p->sa.sin_addr.s_addr)
				die("peer %s listed twice", tok);
		inet_ntop(AF_INET, &p->sa.sin_addr, p->ip, sizeof p->ip);
		npeers++;
	}
	free(copy);
}

static void put_u32(unsigned char *b, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		b[i] = v & 0xff;
}

static void put_u64(unsigned char *b, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = v & 0xff;
}

static uint64_t get_be(const unsigned char *b, int len)
{
	uint64_t v = 0;
	for (int i = 0; i < len; i++)
		v = v << 8 | b[i];
	return v;
}

/* A failed send still uses up its sequence number, so the receiver sees it as lost. */
static void send_one(int fd, struct peer *p, unsigned char *buf, int size)
{
	put_u64(buf + 8, p->seq++);
	ssize_t r = sendto(fd, buf, size, 0, (struct sockaddr *)&p->sa, sizeof p->sa);
	if (r == size) {
		p->n++;
		p->bytes += r;
	} else {
		p->err++; /* ENETUNREACH, EAGAIN, ECONNREFUSED...: keep the schedule going */
	}
}

static struct src *find_src(uint32_t addr)
{
	for (int i = 0; i < nsrcs; i++)
		if (srcs[i].addr == addr)
			return &srcs[i];
	if (nsrcs == MAX_SRCS)
		return NULL;
	struct src *s = &srcs[nsrcs++];
	s->addr = addr;
	inet_ntop(AF_INET, &addr, s->ip, sizeof s->ip);
	return s;
}

static uint64_t epoch_lost(const struct src *s)
{
	uint64_t expected = s->n_epoch ? s->top - s->first + 1 : 0;
	return expected > s->n_epoch ? expected - s->n_epoch : 0;
}

static void on_datagram(const unsigned char *b, ssize_t len, uint32_t addr, int64_t t)
{
	struct src *s;
	if (len < HDR_LEN || memcmp(b, "VCG1", 4) != 0 || !(s = find_src(addr))) {
		ignored++;
		return;
	}
	uint32_t epoch = get_be(b + 4, 4);
	uint64_t seq = get_be(b + 8, 8);
	if (s->n_epoch == 0 || epoch != s->epoch) {
		s->lost_before += epoch_lost(s);
		s->epoch = epoch;
		s->first = s->top = seq;
		s->n_epoch = 0;
		memcpy(s->name, b + 16, HDR_NAME);
		s->name[HDR_NAME] = 0;
	}
	if (seq < s->first)
		s->first = seq;
	if (seq > s->top)
		s->top = seq;
	s->n_epoch++;
	if (s->n) {
		int64_t gap = t - s->last_ns;
		if (gap > s->gap_ns)
			s->gap_ns = gap;
		if (gap > s->maxgap_ns)
			s->maxgap_ns = gap;
	}
	s->last_ns = t;
	s->n++;
	s->bytes += len;
}

static void receive_all(int fd, unsigned char *buf)
{
	for (int i = 0; i < 1024; i++) {
		struct sockaddr_in from;
		socklen_t fl = sizeof from;
		ssize_t r = recvfrom(fd, buf, MAX_SIZE, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (r < 0)
			return; /* EAGAIN, or an ICMP error surfacing: nothing to account */
		on_datagram(buf, r, from.sin_addr.s_addr, now_ns());
	}
}

static char out[48 * 1024];
static size_t outlen;

static void emit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(out + outlen, sizeof out - outlen, fmt, ap);
	va_end(ap);
	if (r > 0)
		outlen += (size_t)r < sizeof out - outlen ? (size_t)r : sizeof out - outlen - 1;
}

static long ms(int64_t ns)
{
	return (long)((ns + NS / 2000) / 1000000);
}

/*
 * gap_ms/maxgap_ms include the silence since the last datagram, so a peer that
 * stopped sending shows a growing gap instead of a stale small one.
 */
static void report(const char *name, int64_t t0, int64_t t)
{
	outlen = 0;
	emit("VCGEN {\"name\":\"%s\",\"t_ms\":%ld,\"tx\":{", name, ms(t - t0));
	for (int i = 0; i < npeers; i++) {
		struct peer *p = &peers[i];
		emit("%s\"%s\":{\"n\":%llu,\"bytes\":%llu,\"txerr\":%llu}", i ? "," : "", p->ip,
		     (unsigned long long)p->n, (unsigned long long)p->bytes, (unsigned long long)p->err);
	}
	emit("},\"rx\":{");
	for (int i = 0; i < nsrcs; i++) {
		struct src *s = &srcs[i];
		int64_t open = t - s->last_ns;
		int64_t gap = open > s->gap_ns ? open : s->gap_ns;
		int64_t maxgap = open > s->maxgap_ns ? open : s->maxgap_ns;
		/* Names are only echoed if JSON-safe; they come off the wire. */
		int safe = 1;
		for (const char *c = s->name; *c; c++)
			safe &= *c >= 0x20 && *c < 0x7f && *c != '"' && *c != '\\';
		emit("%s\"%s\":{\"name\":\"%s\",\"n\":%llu,\"bytes\":%llu,\"lost\":%llu,\"gap_ms\":%ld,\"maxgap_ms\":%ld}",
		     i ? "," : "", s->ip, safe ? s->name : "?", (unsigned long long)s->n,
		     (unsigned long long)s->bytes, (unsigned long long)(s->lost_before + epoch_lost(s)), ms(gap),
		     ms(maxgap));
		s->gap_ns = 0;
	}
	emit("},\"ignored\":%llu}\n", (unsigned long long)ignored);
	for (size_t off = 0; off < outlen;) {
		ssize_t w = write(1, out + off, outlen - off);
		if (w < 0 && errno != EINTR)
			break;
		if (w > 0)
			off += w;
	}
}

/* Event i of the combined (all peers) timeline, exact for any run length. */
static int64_t due(int64_t t0, uint64_t i, uint64_t total)
{
	return t0 + (int64_t)(i / total) * NS + (int64_t)((i % total) * NS / total);
}

static void set_bufsize(int fd, int opt_force, int opt, int bytes)
{
	/* The FORCE variant ignores rmem_max/wmem_max but needs CAP_NET_ADMIN. */
	if (setsockopt(fd, SOL_SOCKET, opt_force, &bytes, sizeof bytes) < 0)
		setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
}

int main(int argc, char **argv)
{
	const char *name = NULL;
	long port = 7000, rate = 20, size = 256;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
			printf("usage: vcgen --name N [--port P] [--rate R] [--size S] [--peers ip,ip,...]\n");
			return 0;
		}
		if (i + 1 >= argc)
			die("%s needs a value (see --help)", o);
		const char *v = argv[++i];
		if (!strcmp(o, "--name"))
			name = v;
		else if (!strcmp(o, "--port"))
			port = num_arg(o, v, 1, 65535);
		else if (!strcmp(o, "--rate"))
			rate = num_arg(o, v, 1, MAX_RATE_TOTAL);
		else if (!strcmp(o, "--size"))
			size = num_arg(o, v, HDR_LEN, MAX_SIZE);
		else if (!strcmp(o, "--peers"))
			parse_peers(v);
		else
			die("unknown option %s (see --help)", o);
	}
	if (!name || !*name || strlen(name) > 63 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(name))
		die("--name must be 1-63 characters of [A-Za-z0-9._-]");
	uint64_t total = (uint64_t)rate * (npeers ? npeers : 1);
	if (total > MAX_RATE_TOTAL)
		die("rate x peers must be at most %d datagrams/s (got %llu)", MAX_RATE_TOTAL, (unsigned long long)total);
	for (int i = 0; i < npeers; i++)
		peers[i].sa.sin_port = htons(port); /* --port may come after --peers */

	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	set_bufsize(fd, SO_RCVBUFFORCE, SO_RCVBUF, 4 << 20);
	set_bufsize(fd, SO_SNDBUFFORCE, SO_SNDBUF, 1 << 20);
	struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
	if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0)
		die("bind to UDP port %ld: %s", port, strerror(errno));
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (tfd < 0)
		die("timerfd_create: %s", strerror(errno));

	static unsigned char txbuf[MAX_SIZE], rxbuf[MAX_SIZE];
	uint32_t epoch;
	if (getrandom(&epoch, sizeof epoch, GRND_NONBLOCK) != sizeof epoch)
		epoch = (uint32_t)(now_ns() ^ getpid() ^ time(NULL)); /* early boot: crng not ready yet */
	memcpy(txbuf, "VCG1", 4);
	put_u32(txbuf + 4, epoch);
	strncpy((char *)txbuf + 16, name, HDR_NAME);
	for (long i = HDR_LEN; i < size; i++)
		txbuf[i] = (unsigned char)i;

	/*
	 * Sends follow one absolute timeline for all peers, so after T seconds
	 * exactly floor(T * rate * peers) + 1 have been scheduled, each peer within
	 * one of T * rate. Peers are interleaved across each period rather than
	 * sent back to back. When we fall behind (a stalled
	 * vCPU, a migration pause), the backlog is repaid at no more than twice
	 * the nominal rate: every datagram still goes out, but never in a burst
	 * that a receiver would see as a flood.
	 */
	const int64_t t0 = now_ns();
	const int64_t catchup = NS / (int64_t)total / 2;
	uint64_t ev = 0;
	int64_t last_send = t0 - NS, next_report = t0 + NS;

	for (;;) {
		int64_t t = now_ns();
		int64_t next_send = INT64_MAX;
		if (npeers) {
			int64_t at = due(t0, ev, total);
			if (at < last_send + catchup)
				at = last_send + catchup;
			if (t >= at) {
				send_one(fd, &peers[ev % npeers], txbuf, size);
				last_send = t;
				ev++;
				at = due(t0, ev, total);
				if (at < t + catchup)
					at = t + catchup;
			}
			next_send = at;
		}
		if (t >= next_report) {
			report(name, t0, t);
			/* Skip reports missed during a stall rather than printing a burst of them. */
			while (next_report <= t)
				next_report += NS;
		}

		int64_t wake = next_send < next_report ? next_send : next_report;
		struct itimerspec its = {.it_value = {.tv_sec = wake / NS, .tv_nsec = wake % NS}};
		timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
		struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = tfd, .events = POLLIN}};
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (pfd[0].revents)
			receive_all(fd, rxbuf);
		if (pfd[1].revents) {
			uint64_t expirations;
			if (read(tfd, &expirations, sizeof expirations) < 0) {
				/* EAGAIN: already consumed; nothing else can fail here */
			}
		}
	}
}
