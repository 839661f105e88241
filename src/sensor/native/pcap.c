// SPDX-License-Identifier: MIT
/*
 * The libpcap reader of the fallback sensor, as a small Node-API addon.
 *
 * npm `cap` was used before; it cannot serve here: its poll callback asserts
 * (binding.cc: `status == 0`) when a capture's interface disappears, which
 * every VM stop and migration does to a tap, so the whole agent aborted. It
 * also fixes the snap length at 64 KiB and calls JavaScript once per frame.
 *
 * This reader captures only the headers (snap length set by the caller),
 * never wakes anyone (the agent polls, non-blocking, in immediate mode so no
 * frame waits in a half-filled ring block), returns many frames per call as
 * fixed-size records, and reports a vanished interface as an error.
 *
 *   open(device, snaplen, bufferBytes) -> handle
 *   read(handle, out: Buffer) -> records written (each RECORD bytes:
 *        u32 wire length, u16 captured length, u16 0, then the captured bytes)
 *   stats(handle) -> { received, dropped }   (frames the ring had no room for)
 *   close(handle)
 */
#include <node_api.h>
#include <pcap/pcap.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SNAP 256
#define RECORD (8 + MAX_SNAP)

struct capture {
	pcap_t *p;
	/* An error met after frames were read in the same call: raised by the next call. */
	char err[PCAP_ERRBUF_SIZE];
};

struct fill {
	uint8_t *out;
	size_t cap;
	size_t n;
	int snap;
};

#define CHECK(env, call)                                                   \
	do {                                                               \
		if ((call) != napi_ok) {                                   \
			napi_throw_error((env), NULL, "pcap addon: " #call); \
			return NULL;                                       \
		}                                                          \
	} while (0)

static void finalize(napi_env env, void *data, void *hint)
{
	struct capture *c = data;
	(void)env;
	(void)hint;
	if (c->p)
		pcap_close(c->p);
	free(c);
}

static struct capture *handle_of(napi_env env, napi_value v)
{
	void *data = NULL;
	if (napi_get_value_external(env, v, &data) != napi_ok || !data) {
		napi_throw_type_error(env, NULL, "not a pcap handle");
		return NULL;
	}
	struct capture *c = data;
	if (!c->p) {
		napi_throw_error(env, "ECLOSED", "the capture is closed");
		return NULL;
	}
	return c;
}

static napi_value js_open(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3];
	char dev[64];
	size_t len;
	int32_t snap, buffer;
	char err[PCAP_ERRBUF_SIZE] = "";

	CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (argc < 3) {
		napi_throw_type_error(env, NULL, "open(device, snaplen, bufferBytes)");
		return NULL;
	}
	CHECK(env, napi_get_value_string_utf8(env, argv[0], dev, sizeof(dev), &len));
	CHECK(env, napi_get_value_int32(env, argv[1], &snap));
	CHECK(env, napi_get_value_int32(env, argv[2], &buffer));
	if (snap < 64 || snap > MAX_SNAP) {
		napi_throw_range_error(env, NULL, "snaplen must be 64..256");
		return NULL;
	}

	pcap_t *p = pcap_create(dev, err);
	if (!p) {
		napi_throw_error(env, NULL, err);
		return NULL;
	}
	int rc = 0;
	if (pcap_set_snaplen(p, snap) || pcap_set_promisc(p, 0) || pcap_set_buffer_size(p, buffer) ||
	    pcap_set_immediate_mode(p, 1) || pcap_set_timeout(p, 100))
		rc = -1;
	if (rc == 0)
		rc = pcap_activate(p);
	if (rc < 0 || pcap_setnonblock(p, 1, err) < 0) {
		char msg[PCAP_ERRBUF_SIZE + 64];
		snprintf(msg, sizeof(msg), "%s", rc < 0 ? pcap_geterr(p) : err);
		pcap_close(p);
		napi_throw_error(env, NULL, msg);
		return NULL;
	}
	if (pcap_datalink(p) != DLT_EN10MB) {
		pcap_close(p);
		napi_throw_error(env, NULL, "not an Ethernet interface");
		return NULL;
	}
	struct capture *c = calloc(1, sizeof(*c));
	if (!c) {
		pcap_close(p);
		napi_throw_error(env, NULL, "out of memory");
		return NULL;
	}
	c->p = p;
	napi_value out;
	CHECK(env, napi_create_external(env, c, finalize, NULL, &out));
	return out;
}

static void on_frame(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct fill *f = (struct fill *)user;
	if (f->n >= f->cap)
		return;
	uint8_t *r = f->out + f->n * RECORD;
	uint32_t wire = h->len;
	uint16_t caplen = h->caplen > MAX_SNAP ? MAX_SNAP : (uint16_t)h->caplen;
	memcpy(r, &wire, 4);
	memcpy(r + 4, &caplen, 2);
	memset(r + 6, 0, 2);
	memcpy(r + 8, bytes, caplen);
	f->n++;
}

/* The capture handle every call but open takes first; NULL with a JavaScript exception pending. */
static struct capture *first_arg(napi_env env, napi_callback_info info, napi_value *argv, size_t n)
{
	size_t argc = n;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) {
		napi_throw_type_error(env, NULL, "pcap addon: missing arguments");
		return NULL;
	}
	return handle_of(env, argv[0]);
}

static napi_value js_read(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct capture *c = first_arg(env, info, argv, 2);
	if (!c)
		return NULL;
	void *data;
	size_t size;
	if (napi_get_buffer_info(env, argv[1], &data, &size) != napi_ok) {
		napi_throw_type_error(env, NULL, "read(handle, buffer)");
		return NULL;
	}
	struct fill f = { .out = data, .cap = size / RECORD, .n = 0 };
	while (f.n < f.cap && !c->err[0]) {
		int got = pcap_dispatch(c->p, (int)(f.cap - f.n), on_frame, (u_char *)&f);
		if (got < 0) {
			/* The interface went away (a VM stopped or left). libpcap says so once. */
			snprintf(c->err, sizeof(c->err), "%s", pcap_geterr(c->p));
			break;
		}
		if (got == 0)
			break;
	}
	/* The frames read before the error are returned first: none is lost. */
	if (c->err[0] && f.n == 0) {
		napi_throw_error(env, "EIFACE", c->err);
		return NULL;
	}
	napi_value n;
	CHECK(env, napi_create_uint32(env, (uint32_t)f.n, &n));
	return n;
}

static napi_value js_stats(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct capture *c = first_arg(env, info, argv, 1);
	if (!c)
		return NULL;
	struct pcap_stat s = { 0 };
	napi_value out, v;
	CHECK(env, napi_create_object(env, &out));
	if (pcap_stats(c->p, &s) == 0) {
		CHECK(env, napi_create_double(env, s.ps_recv, &v));
		CHECK(env, napi_set_named_property(env, out, "received", v));
		CHECK(env, napi_create_double(env, s.ps_drop, &v));
		CHECK(env, napi_set_named_property(env, out, "dropped", v));
	}
	return out;
}

static napi_value js_close(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	void *data = NULL;
	CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	if (napi_get_value_external(env, argv[0], &data) == napi_ok && data) {
		struct capture *c = data;
		if (c->p)
			pcap_close(c->p);
		c->p = NULL;
	}
	return NULL;
}

static napi_value init(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL },
		{ "read", NULL, js_read, NULL, NULL, NULL, napi_default, NULL },
		{ "stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL },
		{ "close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL },
	};
	napi_value record;
	if (napi_define_properties(env, exports, 4, props) != napi_ok || napi_create_uint32(env, RECORD, &record) != napi_ok ||
	    napi_set_named_property(env, exports, "RECORD", record) != napi_ok)
		return NULL;
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
