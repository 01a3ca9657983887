#!/usr/bin/env python3
"""Open N keep-alive HTTP/1.1 connections to a server and hold them open.

Each connection sends one `GET PATH HTTP/1.1` and reads the whole response,
so the server has accepted it and served a request; then it stays idle.
At most --window connections are being set up at any time.

Protocol on stdout/stdin (one line each), for bench/rss.sh:
    -> READY ok=N failed=M seconds=S      all set-up attempts are finished
    <- check                              (on stdin)
    -> ALIVE n                            held connections the server has not closed
    <- close, or end of input             close everything
    -> CLOSED
Details of failures go to stderr. It also gives up after --hold-max seconds
without a command, so it can never outlive its caller for long.
"""
import argparse
import errno
import resource
import select
import selectors
import socket
import sys
import time


# linux/in.h; not in every Python's socket module.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def response_done(buf):
    """(complete, status) for an HTTP/1.1 response in buf."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False, None
    head = buf[:end].decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        return True, None
    fields = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    body = buf[end + 4:]
    if "content-length" in fields:
        return len(body) >= int(fields["content-length"]), status
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return body.endswith(b"0\r\n\r\n"), status
    return True, status  # no body (e.g. 204) or close-delimited: the head is enough


def establish(args):
    request = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % args.path).encode()
    sel = selectors.DefaultSelector()
    held, failures = [], {}
    started = inflight = 0
    t0 = time.monotonic()

    def fail(sock, reason):
        failures[reason] = failures.get(reason, 0) + 1
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    while started < args.n or inflight:
        while inflight < args.window and started < args.n:
            started += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            if args.sources > 1:
                # One loopback source address per ~25,000 connections: a source address has
                # only ~28,000 ephemeral ports towards one server port. The port is chosen at
                # connect (IP_BIND_ADDRESS_NO_PORT), per address.
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind(("127.0.0.%d" % (1 + started % args.sources), 0))
            err = s.connect_ex((args.host, args.port))
            if err not in (0, errno.EINPROGRESS):
                fail(s, "connect: " + errno.errorcode.get(err, str(err)))
                continue
            st = {"phase": "connect", "buf": b"", "deadline": time.monotonic() + args.timeout}
            sel.register(s, selectors.EVENT_WRITE, st)
            inflight += 1
        for key, _ in sel.select(timeout=0.5):
            s, st = key.fileobj, key.data
            if st["phase"] == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(s, "connect: " + errno.errorcode.get(err, str(err)))
                    inflight -= 1
                    continue
                try:
                    s.send(request)  # a few dozen bytes: fits the empty send buffer
                except OSError as e:
                    fail(s, "send: " + (errno.errorcode.get(e.errno, str(e))))
                    inflight -= 1
                    continue
                st["phase"] = "read"
                sel.modify(s, selectors.EVENT_READ, st)
            else:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    fail(s, "recv: " + (errno.errorcode.get(e.errno, str(e))))
                    inflight -= 1
                    continue
                if not data:
                    fail(s, "closed before the response was complete")
                    inflight -= 1
                    continue
                st["buf"] += data
                done, status = response_done(st["buf"])
                if done:
                    inflight -= 1
                    if status != 200:
                        fail(s, "HTTP status %s" % status)
                    else:
                        sel.unregister(s)
                        held.append(s)
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if now > key.data["deadline"]:
                fail(key.fileobj, "timeout after %ss" % args.timeout)
                inflight -= 1
    sel.close()
    return held, failures, time.monotonic() - t0


def alive(held):
    n = 0
    for s in held:
        try:
            data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            n += 1 if data else 0  # b"" = the server closed it
        except BlockingIOError:
            n += 1  # nothing to read: still open
        except OSError:
            pass
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000, help="connections to open (default 10000)")
    ap.add_argument("--path", default="/__health")
    ap.add_argument("--window", type=int, default=256, help="connections being set up at once")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per connection set-up")
    ap.add_argument("--hold-max", type=float, default=600.0, help="give up after this long without a command")
    ap.add_argument("--sources", type=int, default=1,
                    help="loopback source addresses to spread over (127.0.0.1 .. 127.0.0.N); one has ~28,000 ports")
    args = ap.parse_args()

    limit = raise_nofile(args.n + 256)
    if limit < args.n + 16:
        print("hold_conns: open-file limit %d is too low for %d connections" % (limit, args.n), file=sys.stderr)
    held, failures, secs = establish(args)
    for reason, count in sorted(failures.items()):
        print("hold_conns: %d failed: %s" % (count, reason), file=sys.stderr)
    print("READY ok=%d failed=%d seconds=%.2f" % (len(held), sum(failures.values()), secs), flush=True)

    while True:
        ready, _, _ = select.select([sys.stdin], [], [], args.hold_max)
        line = sys.stdin.readline() if ready else ""
        cmd = line.strip()
        if cmd == "check":
            print("ALIVE %d" % alive(held), flush=True)
            continue
        break  # "close", end of input, or --hold-max without a command
    for s in held:
        s.close()
    print("CLOSED", flush=True)


if __name__ == "__main__":
    main()
