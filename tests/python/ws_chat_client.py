"""A chat client on the Python `websockets` package for the interop test.

Joins through the URL, prints every room message as `from: text`, says its own
line once it has seen the message from `after`, and exits after `count`
messages.

    python3 tests/python/ws_chat_client.py ws://HOST:PORT/ws?nick=py NICK_AFTER TEXT COUNT
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str, after: str, text: str, count: int) -> None:
    async with connect(url) as ws:
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
