#!/usr/bin/env python3
"""An application in the lab's host namespace, connecting one way.

    apps.py MODE HOST PORT TIMEOUT

MODE is `getapr` (getapr.create_connection), `asyncio`
(getapr.open_connection) or `stdlib` (socket.create_connection, the
kernel's choice of source). Prints one line:
"connected LOCAL_ADDRESS SECONDS" or "failed SECONDS ERROR", and exits 0
either way: the test judges. The getapr package is found through
PYTHONPATH; its daemon through GETAPR_API.
"""
import asyncio
import socket
import sys
import time


def connect(mode, host, port, timeout):
    if mode == "stdlib":
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            return sock.getsockname()[0]
        finally:
            sock.close()
    import getapr

    if mode == "getapr":
        sock = getapr.create_connection((host, port), timeout=timeout)
        try:
            return sock.getsockname()[0]
        finally:
            sock.close()
    if mode == "asyncio":

        async def run():
            reader, writer = await asyncio.wait_for(
                getapr.open_connection(host, port), timeout
            )
            local = writer.get_extra_info("sockname")[0]
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # the service closes at once: a reset is no failure
            return local

        return asyncio.run(run())
    raise SystemExit(f"unknown mode {mode}")


def main(args):
    mode, host, port, timeout = args[0], args[1], int(args[2]), float(args[3])
    start = time.monotonic()
    try:
        local = connect(mode, host, port, timeout)
    except Exception as error:  # the test prints what went wrong
        took = time.monotonic() - start
        print(f"failed {took:.3f} {type(error).__name__}: {error}", flush=True)
        return
    took = time.monotonic() - start
    print(f"connected {local} {took:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
