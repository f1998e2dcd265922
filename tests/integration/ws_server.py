"""A WebSocket server for the integration tests (Debian's python3-websockets, asyncio API).

    /usr/bin/python3 ws_server.py PORT

The behaviour depends on the path's last segment (the proxy routes /websockets/...):
  .../echo    sends every message back
  .../silent  never sends anything; waits for the peer to go away
  .../sink    reads messages without answering; "status?" gets "alive <count>"
  .../tick    sends "tick <i>" every 300 ms, 11 times, then "done"
No pings: keep-alive traffic would hide what the tunnel timeout tests look for.
"""

import asyncio
import sys

import websockets


async def handler(ws, path=None):
    path = path if path is not None else ws.path
    kind = path.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    try:
        if kind == "echo":
            async for msg in ws:
                await ws.send(msg)
        elif kind == "silent":
            await ws.wait_closed()
        elif kind == "sink":
            count = 0
            async for msg in ws:
                if msg == "status?":
                    await ws.send(f"alive {count}")
                else:
                    count += 1
        elif kind == "tick":
            for i in range(11):
                await asyncio.sleep(0.3)
                await ws.send(f"tick {i}")
            await ws.send("done")
            await ws.wait_closed()
        else:
            await ws.close(code=4404, reason=f"unknown path {path}")
    except websockets.ConnectionClosed:
        pass


async def main(port):
    async with websockets.serve(
        handler, "127.0.0.1", port, ping_interval=None, max_size=8 * 1024 * 1024
    ):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
