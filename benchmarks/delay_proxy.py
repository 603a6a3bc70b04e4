"""An SSH ProxyCommand that adds a fixed one-way delay in each direction, so that the lab's
containers (a fraction of a millisecond away) answer like Droplets across the internet.

  ssh -o ProxyCommand='python3 benchmarks/delay_proxy.py %h %p 20' root@HOST    (+40 ms RTT)

Bytes keep their order; each chunk is held until its time has come. Used by
deploy_speed.py --rtt-ms; not part of the collection.
"""

import collections
import os
import socket
import sys
import threading
import time


def pump(read, write, finish, delay):
    """Copy read() to write(), each chunk delay seconds after it was read."""
    queue = collections.deque()
    ready = threading.Condition()

    def reader():
        while True:
            try:
                data = read()
            except OSError:
                data = b""
            with ready:
                queue.append((time.monotonic() + delay, data))
                ready.notify()
            if not data:
                return

    threading.Thread(target=reader, daemon=True).start()
    while True:
        with ready:
            while not queue:
                ready.wait()
            due, data = queue.popleft()
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if not data:
            finish()
            return
        write(data)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main():
    host, port, delay_ms = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    delay = delay_ms / 1000.0
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)
    upstream = threading.Thread(
        target=pump,
        args=(lambda: os.read(0, 65536), sock.sendall, lambda: sock.shutdown(socket.SHUT_WR), delay),
        daemon=True,
    )
    upstream.start()
    pump(lambda: sock.recv(65536), lambda data: write_all(1, data), lambda: os.close(1), delay)


if __name__ == "__main__":
    main()
