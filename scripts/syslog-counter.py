#!/usr/bin/env python3
"""A counting syslog receiver for benchmarks: accepts TCP connections on 127.0.0.1:PORT and
counts newline-framed messages and bytes until SIGTERM/SIGINT, then prints
`messages=N bytes=B` to stdout (and to FILE when given; FILE is also rewritten with the counts
so far about every second meanwhile, for a caller that waits for a count)."""
import os, selectors, signal, socket, sys, time

port = int(sys.argv[1])
out = sys.argv[2] if len(sys.argv) > 2 else None
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
srv.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
buf = bytearray(4 << 20)
view = memoryview(buf)
msgs = 0
nbytes = 0
running = True
progress_at = time.monotonic()


def write_out(line):
    # Replaced atomically, so a reader never sees a half-written line.
    with open(out + ".tmp", "w") as f:
        f.write(line + "\n")
    os.replace(out + ".tmp", out)


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while running:
    if out and time.monotonic() >= progress_at:
        write_out(f"messages={msgs} bytes={nbytes}")
        progress_at = time.monotonic() + 1.0
    for key, _ in sel.select(timeout=0.2):
        if key.fileobj is srv:
            c, _ = srv.accept()
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            continue
        c = key.fileobj
        try:
            n = c.recv_into(buf)
        except BlockingIOError:
            continue
        except OSError:
            n = 0
        if n == 0:
            sel.unregister(c)
            c.close()
            continue
        nbytes += n
        msgs += buf.count(b"\n", 0, n)
line = f"messages={msgs} bytes={nbytes}"
print(line, flush=True)
if out:
    write_out(line)
