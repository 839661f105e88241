#!/usr/bin/python3
"""The lab's multi-tier service: a web tier, an application tier and Redis,
each on its own guest, and a load generator beside the web tier.

  vcweb.py wait HOST:PORT...          until each answers
  vcweb.py fill --db HOST              writes the items into Redis
  vcweb.py app --db HOST               the application tier, port 8081
  vcweb.py web --app HOST              the web tier, port 8080
  vcweb.py load --requests N [--clients C] [--report S]

A request for /item/N goes web -> app (one HTTP request) -> Redis (READS
round trips, each one GET), so each tier's distance to the next is paid once
per request and per read. Every item's value is known to the load generator
(value(N)), so each answer is checked: a wrong or missing one is an error.
The load generator prints to the console, which the lab reads:
  VCWEB req=COUNT ms_per_req=MEDIAN p99_ms=P99     every --report seconds
  VCWEB verified requests=N errors=0               at the end, or
  VCWEB FAILED requests=N errors=E first=...
"""
import argparse
import http.client
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WEB_PORT, APP_PORT, DB_PORT = 8080, 8081, 6379
READS = 4


def value(item, part):
    """What the fill wrote for one part of an item: known on every tier."""
    return f"{item}:{part}:{(item * 2654435761 + part * 40503) % 1000003}"


class Redis:
    """One connection speaking just enough RESP for SET and GET."""

    def __init__(self, host):
        self.sock = socket.create_connection((host, DB_PORT), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def call(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        line = self.line()
        if line[:1] == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.more()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if line[:1] == b"-":
            raise RuntimeError(line[1:].decode())
        return line[1:].decode()

    def line(self):
        while b"\r\n" not in self.buf:
            self.more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk


def fill(db, items):
    """MSET in chunks: one round trip per 500 keys, not one per key, across a WAN link."""
    r = Redis(db)
    keys = [(f"item:{i}:{part}", value(i, part)) for i in range(items) for part in range(READS)]
    for at in range(0, len(keys), 500):
        r.call("MSET", *[x for kv in keys[at:at + 500] for x in kv])
    print(f"VCWEB filled items={items}", flush=True)


def wait(addresses, seconds=60):
    """Until each HOST:PORT accepts a connection (the tiers start on their own guests)."""
    for a in addresses:
        host, port = a.rsplit(":", 1)
        deadline = time.monotonic() + seconds
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=3).close()
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    print(f"VCWEB error: {a} did not answer in {seconds} s ({e})", flush=True)
                    return 1
                time.sleep(0.5)
    return 0


def serve(port, handle):
    """A threading HTTP server whose GET answers handle(path) -> (status, body)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body are two writes: with Nagle's algorithm the body would wait
        # for the caller's delayed ACK, 40 ms a request whatever the distance.
        disable_nagle_algorithm = True

        def do_GET(self):
            try:
                status, body = handle(self.path)
            except Exception as e:  # the tier's own failure, told to the caller
                status, body = 502, f"error {type(e).__name__}: {e}"
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def app(db):
    local = threading.local()

    def handle(path):
        if not path.startswith("/item/"):
            return 404, "no such path"
        if not hasattr(local, "r"):
            local.r = Redis(db)
        item = int(path[len("/item/"):])
        parts = [local.r.call("GET", f"item:{item}:{p}") for p in range(READS)]
        if any(p is None for p in parts):
            return 404, f"item {item} is not in redis"
        return 200, "|".join(parts)

    serve(APP_PORT, handle)


def web(app_host):
    local = threading.local()

    def handle(path):
        for attempt in (1, 2):
            if not hasattr(local, "c"):
                local.c = http.client.HTTPConnection(app_host, APP_PORT, timeout=30)
            try:
                local.c.request("GET", path)
                resp = local.c.getresponse()
                return resp.status, resp.read().decode()
            except (ConnectionError, http.client.HTTPException, OSError):
                del local.c  # the app closed a kept-alive connection: open a new one, once
                if attempt == 2:
                    raise

    serve(WEB_PORT, handle)


def load(requests, clients, items, report):
    lock = threading.Lock()
    lat, done, errors = [], [0], []
    first = []

    def client(n):
        c = http.client.HTTPConnection("127.0.0.1", WEB_PORT, timeout=60)
        rnd = random.Random(n)
        while True:
            with lock:
                if done[0] >= requests:
                    return
                done[0] += 1
            item = rnd.randrange(items)
            t = time.monotonic()
            try:
                c.request("GET", f"/item/{item}")
                resp = c.getresponse()
                body = resp.read().decode()
                ok = resp.status == 200 and body == "|".join(value(item, p) for p in range(READS))
                why = f"item {item}: status {resp.status}, {body[:80]!r}"
            except Exception as e:
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", WEB_PORT, timeout=60)
                ok, why = False, f"item {item}: {type(e).__name__}: {e}"
            ms = (time.monotonic() - t) * 1000
            with lock:
                lat.append(ms)
                if not ok:
                    errors.append(why)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    print(f"VCWEB load requests={requests} clients={clients}", flush=True)
    for t in threads:
        t.start()
    seen = 0
    while any(t.is_alive() for t in threads):
        time.sleep(report)
        with lock:
            fresh = sorted(lat[seen:])
            seen = len(lat)
        if fresh:
            med = fresh[len(fresh) // 2]
            p99 = fresh[min(len(fresh) - 1, int(len(fresh) * 0.99))]
            print(f"VCWEB req={seen} ms_per_req={med:.1f} p99_ms={p99:.1f}", flush=True)
    if errors:
        print(f"VCWEB FAILED requests={len(lat)} errors={len(errors)} first={errors[0]}", flush=True)
        return 1
    print(f"VCWEB verified requests={len(lat)} errors=0", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["fill", "app", "web", "load", "wait"])
    ap.add_argument("addresses", nargs="*", help="wait: HOST:PORT ...")
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--db")
    ap.add_argument("--app")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--report", type=float, default=2.0)
    a = ap.parse_args()
    if a.role == "wait":
        sys.exit(wait(a.addresses))
    if a.role == "fill":
        fill(a.db, a.items)
    elif a.role == "app":
        app(a.db)
    elif a.role == "web":
        web(a.app)
    else:
        sys.exit(load(a.requests, a.clients, a.items, a.report))


if __name__ == "__main__":
    main()
