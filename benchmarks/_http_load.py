"""A steady HTTP load for figure 9, run as a process of its own: GET PATH on one keep-alive
connection at RATE requests per second for SECONDS, then print how many answers came back
and how many were late by more than one period.

    python _http_load.py PORT PATH RATE SECONDS
"""

from __future__ import annotations

import asyncio
import sys
import time

import h11


async def main(port: int, path: str, rate: float, seconds: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = h11.Connection(h11.CLIENT)
    loop = asyncio.get_running_loop()
    period = 1.0 / rate
    start = loop.time()
    answered = late = 0
    for index in range(int(rate * seconds)):
        due = start + index * period
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > period:
            late += 1
        request = h11.Request(method="GET", target=path, headers=[("host", "bench")])
        writer.write(connection.send(request) + connection.send(h11.EndOfMessage()))
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.EndOfMessage):
                break
        connection.start_next_cycle()
        answered += 1
    writer.close()
    print(answered, late, flush=True)


if __name__ == "__main__":
    port, path, rate, seconds = sys.argv[1:]
    started = time.perf_counter()
    asyncio.run(main(int(port), path, float(rate), float(seconds)))
