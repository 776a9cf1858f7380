#!/usr/bin/env python3
"""Seed corpus from real client sessions.

    capture.py proxy LISTEN_PORT UPSTREAM_PORT OUT_DIR
        a loopback TCP proxy that records what each client sends (one file
        per connection); point a client suite at it, stop it with SIGTERM
    capture.py split CAPTURE_DIR CORPUS_DIR [PER_TARGET]
        cut the recorded streams into seeds for each fuzz target:
        frame/ (client byte streams after the protocol header),
        method/ (method payloads), properties/ (content-header properties),
        table/ (field tables from method arguments), connection/ (the frames
        after the handshake, as records: type u8, channel u16, length u16,
        payload)

benches/fuzz.sh --capture does both with the pika interop suite and the
lapin integration tests.
"""

import asyncio
import hashlib
import os
import signal
import struct
import sys


def proxy(listen_port, upstream_port, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    counter = [0]

    async def pump(reader, writer, sink=None):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if sink is not None:
                    sink.write(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(client_reader, client_writer):
        counter[0] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        path = os.path.join(out_dir, "conn-%05d.bin" % counter[0])
        with open(path, "wb") as sink:
            await asyncio.gather(
                pump(client_reader, up_writer, sink), pump(up_reader, client_writer)
            )

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


def frames(stream):
    if stream.startswith(b"AMQP"):
        stream = stream[8:]
    at = 0
    while at + 7 <= len(stream):
        kind, channel, size = struct.unpack(">BHI", stream[at : at + 7])
        if at + 8 + size > len(stream) or stream[at + 7 + size] != 0xCE:
            return
        yield kind, channel, stream[at + 7 : at + 7 + size]
        at += 8 + size


# Field layouts up to each table (as src/protocol/table.rs knows them):
# s short string, h u16, b octet, T table.
TABLE_LAYOUTS = {
    (10, 11): "T",
    (40, 10): "hssbT",
    (40, 30): "hsssbT",
    (40, 40): "hsssbT",
    (50, 10): "hsbT",
    (50, 20): "hsssbT",
    (50, 50): "hsssT",
    (60, 20): "hssbT",
}


def method_table(payload):
    class_id, method_id = struct.unpack(">HH", payload[:4])
    layout = TABLE_LAYOUTS.get((class_id, method_id))
    if not layout:
        return None
    at = 4
    for field in layout:
        if field == "s":
            at += 1 + payload[at]
        elif field == "h":
            at += 2
        elif field == "b":
            at += 1
        else:
            (length,) = struct.unpack(">I", payload[at : at + 4])
            return payload[at : at + 4 + length]
    return None


def split(capture_dir, corpus_dir, per_target=40):
    seeds = {t: {} for t in ("frame", "method", "properties", "table", "connection")}

    def add(target, key, data):
        # One seed per distinct shape (key), the shortest seen.
        if data and (key not in seeds[target] or len(data) < len(seeds[target][key])):
            seeds[target][key] = data

    for name in sorted(os.listdir(capture_dir)):
        with open(os.path.join(capture_dir, name), "rb") as f:
            stream = f.read()
        parsed = list(frames(stream))
        if not parsed:
            continue
        shape = []
        records = b""
        opened = False
        for kind, channel, payload in parsed:
            if kind == 1 and len(payload) >= 4:
                ids = struct.unpack(">HH", payload[:4])
                shape.append(ids)
                add("method", (ids, len(payload) > 40), payload)
                table = method_table(payload)
                if table is not None and len(table) > 4:
                    add("table", (ids, len(table) // 64), table)
                if ids == (10, 40):
                    opened = True
                    continue
            elif kind == 2 and len(payload) >= 14:
                flags = struct.unpack(">H", payload[12:14])[0]
                add("properties", ("p", flags), payload[12:])
                shape.append(("h", flags))
            if opened and len(records) < 8192:
                records += struct.pack(">BHH", kind, channel, min(len(payload), 65535))
                records += payload[:65535]
        key = tuple(sorted(set(shape), key=repr))
        add("frame", key, stream[8:8200] if stream.startswith(b"AMQP") else stream[:8192])
        if records:
            add("connection", key, records)
    for target, found in seeds.items():
        out = os.path.join(corpus_dir, target)
        os.makedirs(out, exist_ok=True)
        # Shortest first: AFL favours small seeds, and a spread of shapes.
        chosen = sorted(found.values(), key=len)[:per_target]
        for data in chosen:
            digest = hashlib.sha1(data).hexdigest()[:16]
            with open(os.path.join(out, digest), "wb") as f:
                f.write(data)
        print("%s: %d seeds" % (target, len(chosen)))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "proxy":
        proxy(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) >= 4 and sys.argv[1] == "split":
        split(sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
