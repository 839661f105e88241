/*
 * stencil.c - communication-heavy MPI workload for virt-cohort lab guests.
 *
 * A 1-D Jacobi heat-diffusion stencil in double precision. The global array
 * of N cells is split into contiguous blocks, one per rank; when N is not
 * divisible by P the first N%P ranks get one extra cell. Cells -1 and N are
 * fixed boundary values (held by ranks 0 and P-1; the ends are not periodic).
 *
 * Every iteration each rank
 *   1. swaps one halo cell with its left and right neighbour,
 *   2. swaps a --halo-bytes B payload with each neighbour,
 *      one neighbour after the other, as MPI_Sendrecv codes do.
 *      Bytes 0..7 hold the iteration number, byte j>=8 holds a pattern of
 *      (iteration, sender rank, j). Every byte is checked on receipt; a
 *      mismatch prints "VCMPI FAILED payload ..." and aborts with code 1,
 *   3. updates its cells: out[i] = 0.5*in[i] + 0.25*(in[i-1] + in[i+1]).
 *      --compute-reps C repeats this identical update C times to scale
 *      compute; the result does not depend on C,
 * and every --reduce K iterations the max abs change (residual) is combined
 * with MPI_Allreduce(MPI_MAX). Report lines show the latest reduced residual.
 *
 * Output (rank 0, stdout, line-buffered): "VCMPI start ...", "VCMPI hosts=..."
 * (rank order), "VCMPI iter=<i> ranks=<P> ms_per_iter=<ms> residual=<r>" every
 * R iterations (rank 0 wall time since the previous report / iterations),
 * then "VCMPI verified iters=<I> checksum=<sum> seconds=<s>" (exit 0; s is
 * the distributed loop only) or "VCMPI FAILED cell=<k> ..." (exit 1).
 *
 * Verification (--iters > 0): rank 0 gathers the final array, then starts
 * again from the initial condition and runs all iterations serially over the
 * whole array with the same step() function, so it never uses distributed
 * data. Halos correct => bitwise identical; a wrong halo value spreads into
 * neighbouring cells and the first differing cell is reported. Build with
 * -DVC_BREAK_HALO to corrupt rank P-1's left halo (with P=1: the left boundary)
 * at iteration 5 and see this fail.
 *
 * --iters 0 runs until SIGTERM/SIGINT; ranks agree to stop at the next
 * reduction and exit 0 after "VCMPI stopped iter=<i>" (no verification).
 * Bad or unknown options: message on stderr, exit 2.
 *
 * Waiting: by default a rank waits as Open MPI does, polling (MPI_Waitall),
 * so its guest's only vCPU spins while a message crosses sites. --poll-us U
 * waits instead by spinning at most --spin-us S (default 2000) and then
 * testing every U microseconds, sleeping in between, so the vCPU halts. On
 * this 2-core machine with four TCG guests the sleeping variant was slower
 * once the ranks were together (a sleeping guest wakes late when the host's
 * CPUs are shared), so the lab runs the default.
 *
 * Build: mpicc -O2 -Wall -Wextra -Werror -o stencil stencil.c
 * Run:   mpirun -np 4 ./stencil --cells 65536 --iters 2000
 */
#include <mpi.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEFT_BC 1.0
#define RIGHT_BC -0.5
#define TAG_CELL 1
#define TAG_PAYLOAD 2

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

/* Initial value of global cell g: deterministic, varied, no libm needed. */
static double initial(long g) { return (double)((g * 7919L) % 1000L) / 1000.0; }

/* One Jacobi step over n cells; in[-1] and in[n] are the halos. Returns the
 * max abs change. Used by both the distributed and serial runs. Scaling by
 * 0.5 and 0.25 is exact, so FMA contraction cannot change the result. */
static double step(const double *in, double *out, long n)
{
    double res = 0.0;
    for (long i = 0; i < n; i++) {
        out[i] = 0.5 * in[i] + 0.25 * (in[i - 1] + in[i + 1]);
        double d = out[i] - in[i];
        if (d < 0) d = -d;
        if (d > res) res = d;
    }
    return res;
}

/* Payload byte j >= 8 sent by rank r at iteration it. */
#define PATTERN(it, r, j) ((unsigned char)((it) * 31 + (r) * 7 + (j)))

static void fill_payload(unsigned char *buf, long len, long long it, int rank)
{
    int64_t hdr = it;
    memcpy(buf, &hdr, sizeof hdr);
    for (long j = 8; j < len; j++) buf[j] = PATTERN(it, rank, j);
}

static void check_payload(const unsigned char *buf, long len, long long it,
                          int sender, int rank)
{
    int64_t hdr;
    memcpy(&hdr, buf, sizeof hdr);
    long bad = (hdr != it) ? 0 : -1;
    for (long j = 8; bad < 0 && j < len; j++)
        if (buf[j] != PATTERN(it, sender, j)) bad = j;
    if (bad >= 0) {
        printf("VCMPI FAILED payload rank=%d from=%d iter=%lld byte=%ld\n",
               rank, sender, it, bad);
        fflush(stdout);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* Parse a decimal integer in [lo, hi]; returns 0 on failure. */
/* Waits for the requests: spinning (each test also drives Open MPI's
 * progress) for up to spin_us, then testing every poll_us while sleeping. */
static void wait_all(int count, MPI_Request *req, long spin_us, long poll_us)
{
    if (poll_us == 0) {
        MPI_Waitall(count, req, MPI_STATUSES_IGNORE);
        return;
    }
    struct timespec pause = {0, poll_us * 1000L};
    double spin_until = MPI_Wtime() + (double)spin_us * 1e-6;
    for (;;) {
        int done = 0;
        MPI_Testall(count, req, &done, MPI_STATUSES_IGNORE);
        if (done) return;
        if (MPI_Wtime() > spin_until) nanosleep(&pause, NULL);
    }
}

/* Sends `s` to `to` while receiving `r` from `from` (MPI_Sendrecv, waited for by wait_all). */
static void swap(void *s, void *r, int count, MPI_Datatype type, int to, int from, int tag,
                 long spin_us, long poll_us)
{
    MPI_Request req[2];
    MPI_Irecv(r, count, type, from, tag, MPI_COMM_WORLD, &req[0]);
    MPI_Isend(s, count, type, to, tag, MPI_COMM_WORLD, &req[1]);
    wait_all(2, req, spin_us, poll_us);
}

static int parse_num(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno == ERANGE || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (!p) { fprintf(stderr, "stencil: out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 3); }
    return p;
}

static void usage_exit(int rank, const char *msg, const char *arg)
{
    if (rank == 0)
        fprintf(stderr, "stencil: %s%s%s\nusage: stencil [--cells N] [--iters I] "
                "[--report R] [--reduce K] [--halo-bytes B] [--compute-reps C] [--poll-us U] [--spin-us S]\n",
                msg, arg ? ": " : "", arg ? arg : "");
    MPI_Finalize();
    exit(2);
}

int main(int argc, char **argv)
{
    int rank, P;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    setvbuf(stdout, NULL, _IOLBF, 0);

    static const char *names[] = {"--cells", "--iters", "--report", "--reduce",
                                  "--halo-bytes", "--compute-reps", "--poll-us", "--spin-us"};
    static const long long lo[] = {1, 0, 1, 1, 0, 1, 0, 0};
    static const long long hi[] = {INT_MAX, LLONG_MAX, INT_MAX, INT_MAX, 1 << 30, INT_MAX, 999999, 10000000};
    long long opt[] = {65536, 2000, 50, 10, 4096, 1, 200, 2000};
    for (int a = 1; a < argc; a++) {
        int k = 0;
        while (k < 8 && strcmp(argv[a], names[k]) != 0) k++;
        if (k == 8) usage_exit(rank, "unknown option", argv[a]);
        if (a + 1 >= argc) usage_exit(rank, "missing value for", argv[a]);
        if (!parse_num(argv[a + 1], lo[k], hi[k], &opt[k])) {
            char msg[160];
            snprintf(msg, sizeof msg, "bad value for %s (integer %lld..%lld)",
                     names[k], lo[k], hi[k]);
            usage_exit(rank, msg, argv[a + 1]);
        }
        a++;
    }
    long N = (long)opt[0], R = (long)opt[2], K = (long)opt[3], C = (long)opt[5];
    long long I = opt[1];
    long B = (long)opt[4], poll_us = (long)opt[6], spin_us = (long)opt[7];
    if (B > 0 && B < 8) usage_exit(rank, "--halo-bytes must be 0 or >= 8", NULL);
    if (N < P) usage_exit(rank, "--cells must be at least the number of ranks", NULL);
    if (I == 0) { signal(SIGTERM, on_signal); signal(SIGINT, on_signal); }

    /* Block decomposition: remainder cells go to the lowest ranks. */
    long base = N / P, extra = N % P;
    long n = base + (rank < extra ? 1 : 0);
    long first = rank * base + (rank < extra ? rank : extra);
    int left = rank > 0 ? rank - 1 : MPI_PROC_NULL;
    int right = rank < P - 1 ? rank + 1 : MPI_PROC_NULL;

    double *u = xmalloc((size_t)(n + 2) * sizeof *u), *v = xmalloc((size_t)(n + 2) * sizeof *v);
    unsigned char *sbuf = xmalloc((size_t)B + 1), *rl = xmalloc((size_t)B + 1),
                  *rr = xmalloc((size_t)B + 1);
    for (long i = 0; i < n; i++) u[i + 1] = initial(first + i);
    u[0] = v[0] = LEFT_BC;          /* only stays fixed on rank 0 */
    u[n + 1] = v[n + 1] = RIGHT_BC; /* only stays fixed on rank P-1 */

    char host[MPI_MAX_PROCESSOR_NAME] = {0};
    int hlen;
    MPI_Get_processor_name(host, &hlen);
    char *hosts = rank == 0 ? xmalloc((size_t)P * MPI_MAX_PROCESSOR_NAME) : NULL;
    MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts, MPI_MAX_PROCESSOR_NAME,
               MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("VCMPI start ranks=%d cells=%ld iters=%lld halo_bytes=%ld\n", P, N, I, B);
        printf("VCMPI hosts=");
        for (int r = 0; r < P; r++)
            printf("%s%s", r ? "," : "", hosts + (size_t)r * MPI_MAX_PROCESSOR_NAME);
        printf("\n");
        fflush(stdout);
        free(hosts);
    }

    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime(), t_rep = t0, residual = 0.0;
    long long it = 0, it_rep = 0;
    int stopping = 0;
    while (I == 0 ? !stopping : it < I) {
        it++;
        /* 1. halo cells: my first cell left, my last right, one direction
         * after the other, as MPI_Sendrecv codes do. */
        swap(&u[1], &u[n + 1], 1, MPI_DOUBLE, left, right, TAG_CELL, spin_us, poll_us);
        swap(&u[n], &u[0], 1, MPI_DOUBLE, right, left, TAG_CELL, spin_us, poll_us);
#ifdef VC_BREAK_HALO
        if (rank == P - 1 && it == 5) u[0] += 1e-3;
#endif
        /* 2. payload, same content to both neighbours. */
        if (B > 0) {
            fill_payload(sbuf, B, it, rank);
            swap(sbuf, rr, (int)B, MPI_BYTE, left, right, TAG_PAYLOAD, spin_us, poll_us);
            swap(sbuf, rl, (int)B, MPI_BYTE, right, left, TAG_PAYLOAD, spin_us, poll_us);
            if (left != MPI_PROC_NULL) check_payload(rl, B, it, left, rank);
            if (right != MPI_PROC_NULL) check_payload(rr, B, it, right, rank);
        }
        /* 3. update (C identical repetitions), then swap buffers. */
        double local_res = 0.0;
        for (long c = 0; c < C; c++) local_res = step(u + 1, v + 1, n);
        double *tmp = u; u = v; v = tmp;

        if (it % K == 0) {
            double in[2] = {local_res, stop_requested ? 1.0 : 0.0}, outv[2];
            if (poll_us == 0) {
                MPI_Allreduce(in, outv, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            } else {
                MPI_Request red;
                MPI_Iallreduce(in, outv, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD, &red);
                wait_all(1, &red, spin_us, poll_us);
            }
            residual = outv[0];
            stopping = outv[1] > 0.0;
        }
        if (rank == 0 && (it % R == 0 || it == I || stopping)) {
            double now = MPI_Wtime();
            printf("VCMPI iter=%lld ranks=%d ms_per_iter=%.3f residual=%.6e\n", it, P,
                   (now - t_rep) * 1000.0 / (double)(it - it_rep), residual);
            fflush(stdout);
            t_rep = now;
            it_rep = it;
        }
    }
    double seconds = MPI_Wtime() - t0;
    if (I == 0) {
        if (rank == 0) { printf("VCMPI stopped iter=%lld\n", it); fflush(stdout); }
        MPI_Finalize();
        return 0;
    }

    /* Verification: gather, then recompute serially from scratch on rank 0. */
    int *counts = NULL, *displs = NULL;
    double *dist = NULL, *s = NULL, *t = NULL;
    if (rank == 0) {
        counts = xmalloc((size_t)P * sizeof *counts);
        displs = xmalloc((size_t)P * sizeof *displs);
        dist = xmalloc((size_t)N * sizeof *dist);
        s = xmalloc((size_t)(N + 2) * sizeof *s);
        t = xmalloc((size_t)(N + 2) * sizeof *t);
        for (int r = 0; r < P; r++) {
            counts[r] = (int)(base + (r < extra ? 1 : 0));
            displs[r] = (int)(r * base + (r < extra ? r : extra));
        }
    }
    MPI_Gatherv(u + 1, (int)n, MPI_DOUBLE, dist, counts, displs, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    int rc = 0;
    if (rank == 0) {
        for (long g = 0; g < N; g++) s[g + 1] = initial(g);
        s[0] = t[0] = LEFT_BC;
        s[N + 1] = t[N + 1] = RIGHT_BC;
        for (long long k = 0; k < I; k++) {
            step(s + 1, t + 1, N);
            double *tmp = s; s = t; t = tmp;
        }
        double sum = 0.0;
        for (long g = 0; g < N && rc == 0; g++) {
            if (memcmp(&dist[g], &s[g + 1], sizeof(double)) != 0) {
                printf("VCMPI FAILED cell=%ld distributed=%.17g serial=%.17g\n",
                       g, dist[g], s[g + 1]);
                rc = 1;
            }
            sum += dist[g];
        }
        if (rc == 0)
            printf("VCMPI verified iters=%lld checksum=%.17g seconds=%.3f\n", I, sum, seconds);
        fflush(stdout);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
