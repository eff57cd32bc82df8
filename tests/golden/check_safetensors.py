#!/usr/bin/env python3
"""tests/golden/check_safetensors.py — an independent safetensors reader (stdlib only).

Usage: check_safetensors.py FILE [EXPECT.json]

Parses FILE by the safetensors specification (8-byte little-endian header length, a UTF-8 JSON
header whose "__metadata__" maps strings to strings and whose tensors carry dtype, shape and
data_offsets that tile the data section exactly), loads every F32 tensor, and, given EXPECT.json
({name: {"shape": [...], "first": x, "last": y, "sum": s}}), checks that the tensor set, shapes and
values agree. Exit status 0 when the file is valid and matches; 1 with a message otherwise.
It shares no code with loco, so it catches writer bugs that loco's own reader would mirror.
"""
import array
import json
import math
import struct
import sys

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
              "U8": 1, "BOOL": 1}


def fail(msg):
    print("check_safetensors: " + msg, file=sys.stderr)
    sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        fail(f"{path}: header length {n} runs past the end of the file")
    raw = blob[8:8 + n]
    if not raw.startswith(b"{"):
        fail(f"{path}: header does not start with '{{'")
    header = json.loads(raw.decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        fail(f"{path}: __metadata__ must map strings to strings")
    spans = []
    tensors = {}
    for name, info in header.items():
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_SIZE:
            fail(f"{name}: unknown dtype {dtype}")
        numel = math.prod(shape)
        if end - begin != numel * DTYPE_SIZE[dtype]:
            fail(f"{name}: data_offsets [{begin}, {end}) do not fit shape {shape} of {dtype}")
        spans.append((begin, end, name))
        if dtype == "F32":
            values = array.array("f")
            values.frombytes(data[begin:end])
            if sys.byteorder != "little":
                values.byteswap()
            tensors[name] = (shape, values)
    cursor = 0
    for begin, end, name in sorted(spans):
        if begin != cursor:
            fail(f"{name}: starts at {begin}, expected {cursor} (hole or overlap)")
        cursor = end
    if cursor != len(data):
        fail(f"data section is {len(data)} bytes, tensors cover {cursor}")
    return meta, tensors


def main():
    if len(sys.argv) not in (2, 3):
        fail("usage: check_safetensors.py FILE [EXPECT.json]")
    meta, tensors = read(sys.argv[1])
    if "loco.model" in meta:
        json.loads(meta["loco.model"])  # the configuration is itself valid JSON
    if len(sys.argv) == 3:
        with open(sys.argv[2]) as f:
            expect = json.load(f)
        if set(expect) != set(tensors):
            fail(f"tensor names differ: missing {sorted(set(expect) - set(tensors))}, "
                 f"extra {sorted(set(tensors) - set(expect))}")
        for name, want in expect.items():
            shape, values = tensors[name]
            if list(shape) != want["shape"]:
                fail(f"{name}: shape {shape}, expected {want['shape']}")
            if values[0] != want["first"] or values[-1] != want["last"]:
                fail(f"{name}: first/last {values[0]}/{values[-1]}, expected "
                     f"{want['first']}/{want['last']}")
            total = 0.0
            for v in values:
                total += v
            if not math.isclose(total, want["sum"], rel_tol=1e-12, abs_tol=1e-12):
                fail(f"{name}: sum {total!r}, expected {want['sum']!r}")
    print(f"check_safetensors: {sys.argv[1]}: {len(tensors)} tensors OK")


if __name__ == "__main__":
    main()
