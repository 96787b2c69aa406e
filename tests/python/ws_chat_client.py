"""A chat client on the Python `websockets` package for the interop test.

Joins through the URL, prints every room message as `from: text`, says its own
line once it has seen the message from `after`, and exits after `count`
messages. A `wss://` URL is trusted without verification: the test
server's certificate is self-signed.

    python3 tests/python/ws_chat_client.py ws://HOST:PORT/ws?nick=py NICK_AFTER TEXT COUNT
"""

import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect


async def main(url: str, after: str, text: str, count: int) -> None:
    unverified = None
    if url.startswith("wss://"):
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
    async with connect(url, ssl=unverified) as ws:
        seen = 0
        while seen < count:
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
            if event["type"] != "message":
                continue
            seen += 1
            print(f"{event['from']}: {event['text']}", flush=True)
            if event["from"] == after:
                await ws.send(json.dumps({"type": "say", "room": event["room"], "text": text}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
