"""A third-party WebSocket client (the `websockets` package from PyPI) talking to
an echo server: text and binary messages must come back as messages of the same
kind with the same content. Prints one line per check; exits 1 on a mismatch.

    python3 tests/python/ws_echo_client.py ws://127.0.0.1:PORT/
"""

import asyncio
import sys

from websockets.asyncio.client import connect

CASES = [
    ("text", "Hello from client!"),
    ("unicode text", "héllo ✓ 🚀"),
    ("empty text", ""),
    ("binary", bytes(range(256))),
    ("large binary", bytes(i % 251 for i in range(200_000))),
]


async def main(url: str) -> int:
    async with connect(url, max_size=None) as ws:
        for name, payload in CASES:
            await ws.send(payload)
            reply = await asyncio.wait_for(ws.recv(), timeout=10)
            if type(reply) is not type(payload) or reply != payload:
                print(f"{name}: mismatch ({type(reply).__name__}, {len(reply)} long)")
                return 1
            print(f"{name}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
