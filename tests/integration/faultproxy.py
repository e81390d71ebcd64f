"""A small HTTP/1.1 proxy that breaks a share of the requests passing through
it, for fault-injection tests and the bench: between warmcache and the S3
server, it answers 503 SlowDown (or 429, as some S3-compatible servers
throttle: "toomany"), resets the connection, or cuts a response
body in half, at a seeded random rate (or for every request: rate=1.0); it
can also slow each connection down, so a test can stop a fill half way,
and play S3's request-rate limit per prefix (limit_rps: object GETs beyond
that many a second to one /bucket/prefix are answered 503 SlowDown, as S3
answers them beyond about 5,500 a second).

It understands just enough HTTP for S3 GETs: request heads without bodies
(a request with a body is passed through whole), responses with
Content-Length or chunked bodies, keep-alive on both sides.
"""
import random
import socket
import struct
import threading
import time

SLOWDOWN = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
            b"<Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>")
TOOMANY = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>TooManyRequests</Code>"
           b"<Message>Too many requests.</Message><RequestId>faultproxy</RequestId></Error>")
KINDS = ("slowdown", "reset", "truncate")
# Hostile servers, for object GETs only (a listing passes through): a body
# longer than its Content-Length says, a body that never ends, a body that
# trickles a byte at a time (slowloris).
HOSTILE = ("longer", "endless", "slowloris")


class RequestLimit:
    """S3's request rate per prefix: a token bucket per /bucket/prefix with a
    tenth of a second of burst; a request beyond it is answered SlowDown."""

    def __init__(self, rps):
        self.rps, self.buckets, self.lock = rps, {}, threading.Lock()
        self.allowed = self.refused = 0

    def over(self, group):
        now = time.monotonic()
        with self.lock:
            tokens, when = self.buckets.get(group, (self.rps / 10, now))
            tokens = min(max(self.rps / 10, 1.0), tokens + (now - when) * self.rps)
            over = tokens < 1
            self.buckets[group] = (tokens if over else tokens - 1, now)
            if over:
                self.refused += 1
            else:
                self.allowed += 1
            return over


def _read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n", rest


def _header(head, name):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return None


class FaultProxy:
    def __init__(self, upstream, rate=0.1, seed=1, kinds=KINDS, bytes_per_s=0, limit_rps=0, limit=None,
                 node_bytes_per_s=0):
        """limit: a RequestLimit shared by several proxies (a fleet's nodes
        each behind their own, all against one S3 prefix limit); limit_rps
        makes one of this proxy's own. node_bytes_per_s: the bandwidth of
        every connection of this proxy together (a node's NIC)."""
        host, port = upstream.split("://", 1)[1].split(":")
        self.up = (host, int(port.rstrip("/")))
        self.rate, self.kinds = rate, kinds
        self.bytes_per_s = bytes_per_s  # per connection, 0: as fast as it goes
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "limited": 0, **{k: 0 for k in kinds}}
        self.limit = limit or (RequestLimit(limit_rps) if limit_rps else None)
        self.node_bytes_per_s = node_bytes_per_s
        self.next_free = 0.0  # when the node's link is free again (node_bytes_per_s)
        self.heads = []  # every request head, for tests that check what was sent
        # object GETs in flight (head read, response not yet relayed; not
        # listings, not HEADs), by the first two components of the path
        # (/bucket/prefix), and their peaks
        self.inflight, self.peak = {}, {}
        self.peak_total = 0
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(256)
        self.endpoint = f"http://127.0.0.1:{self.ls.getsockname()[1]}"
        self.stopping = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # Wake the accepting thread and wait for it before closing: a thread
        # about to call accept() on a closed fd number would accept on
        # whatever socket reuses that number next (the next test's proxy).
        self.stopping = True
        try:
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.acceptor.join(timeout=5)
        self.ls.close()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _over_limit(self, group):
        if self.limit is None or group is None or not self.limit.over(group):
            return False
        with self.lock:
            self.counts["limited"] += 1
        return True

    def _pace(self, n):
        """Waits until n more bytes fit in the node's bandwidth."""
        if self.node_bytes_per_s:
            with self.lock:
                now = time.monotonic()
                start = max(now, self.next_free)
                self.next_free = start + n / self.node_bytes_per_s
            time.sleep(max(0.0, self.next_free - now))

    def _pick(self):
        with self.lock:
            self.counts["requests"] += 1
            if self.rng.random() >= self.rate:
                return None
            k = self.rng.choice(self.kinds)
            self.counts[k] += 1
            return k

    def _flight(self, group, d):
        if group is None:
            return
        with self.lock:
            self.inflight[group] = self.inflight.get(group, 0) + d
            self.peak[group] = max(self.peak.get(group, 0), self.inflight[group])
            self.peak_total = max(self.peak_total, sum(self.inflight.values()))

    def _serve(self, c):
        up = None
        buf = b""
        try:
            while not self.stopping:
                head, buf = _read_head(c, buf)
                if head is None:
                    return
                n = int(_header(head, b"content-length") or 0)
                while len(buf) < n:
                    buf += c.recv(65536)
                body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.heads.append(head.decode(errors="replace"))
                kind = self._pick()
                first = head.split(b"\r\n", 1)[0].split(b" ")
                if (len(first) > 1 and first[0] == b"GET" and b"list-type=" not in first[1]
                        and self._over_limit("/".join(first[1].decode(errors="replace").split("?")[0].split("/")[:3]))):
                    kind = "slowdown"
                if kind == "slowdown":
                    c.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: "
                              + str(len(SLOWDOWN)).encode() + b"\r\n\r\n" + SLOWDOWN)
                    continue
                if kind == "toomany":
                    c.sendall(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/xml\r\nContent-Length: "
                              + str(len(TOOMANY)).encode() + b"\r\n\r\n" + TOOMANY)
                    continue
                if kind == "reset":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if up is None:
                    up = socket.create_connection(self.up)
                up.sendall(head + body)
                if kind in HOSTILE and b"list-type=" not in head.split(b"\r\n", 1)[0]:
                    self._hostile(up, c, kind)
                    return
                method, target = head.split(b" ", 2)[:2]
                group = None
                if method == b"GET" and b"list-type=" not in target:
                    group = "/".join(target.decode(errors="replace").split("?")[0].split("/")[:3])
                self._flight(group, +1)
                ended = []

                def end():  # before the last bytes go: the client may send its next request at once
                    if not ended:
                        ended.append(1)
                        self._flight(group, -1)
                try:
                    if not self._relay(up, c, truncate=kind == "truncate", end=end, head_only=method == b"HEAD"):
                        return
                finally:
                    end()
        except OSError:
            return
        finally:
            c.close()
            if up is not None:
                up.close()

    def _hostile(self, up, c, kind):
        head, rest = _read_head(up, b"")
        if head is None:
            return
        n = int(_header(head, b"content-length") or 0)
        while len(rest) < n:
            more = up.recv(1 << 20)
            if not more:
                break
            rest += more
        lines = [l for l in head.split(b"\r\n") if l and not l.lower().startswith((b"content-length:",
                                                                                    b"connection:"))]
        if kind == "longer":
            c.sendall(b"\r\n".join(lines) + b"\r\nContent-Length: %d\r\n\r\n" % (n + 100) + rest + b"x" * 100)
        elif kind == "endless":
            c.sendall(b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + rest)
            while not self.stopping:
                c.sendall(b"\0" * 65536)
        else:  # slowloris: the right length, a byte at a time
            c.sendall(b"\r\n".join(lines) + b"\r\nContent-Length: %d\r\n\r\n" % n)
            for i in range(n):
                if self.stopping:
                    return
                c.sendall(rest[i:i + 1])
                time.sleep(0.5)

    def _relay(self, up, c, truncate, end=lambda: None, head_only=False):
        """Relays one response; False when either connection is done. An
        answer to HEAD (or a 204 or 304) has no body, whatever its
        Content-Length says: waiting for one on a connection the server
        keeps open would wait forever."""
        head, rest = _read_head(up, b"")
        if head is None:
            return False
        status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
        if head_only or status in (b"204", b"304"):
            end()
            c.sendall(head)
            return True
        length = _header(head, b"content-length")
        if length is not None:
            n = int(length)
            if truncate:
                n //= 2
            c.sendall(head)
            sent = 0
            while sent < n:
                chunk = rest if rest else up.recv(256 << 10)
                rest = b""
                if not chunk:
                    return False
                chunk = chunk[: n - sent]
                if self.bytes_per_s:
                    time.sleep(len(chunk) / self.bytes_per_s)
                self._pace(len(chunk))
                if sent + len(chunk) == n:
                    end()
                c.sendall(chunk)
                sent += len(chunk)
            return not truncate
        # chunked: relay chunk by chunk, framing included
        c.sendall(head)
        buf = rest

        def need(k):
            nonlocal buf
            while len(buf) < k:
                more = up.recv(1 << 20)
                if not more:
                    raise OSError("upstream closed")
                buf += more

        while True:
            while b"\r\n" not in buf:
                need(len(buf) + 1)
            line, _, _ = buf.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            total = len(line) + 2 + size + 2
            need(total)
            frame, buf = buf[:total], buf[total:]
            if truncate:
                c.sendall(frame[: len(frame) // 2])
                return False
            c.sendall(frame)
            if size == 0:
                return True
