#!/usr/bin/env python3
"""Generate the minikernel test disk (deterministic, 64 KiB = 128 sectors).

byte i = ((i*31 + 7) ^ (i >> 8)) & 0xff, except that the first bytes of
sector 0 hold the magic string below.  (The "^ (i >> 8)" makes every
256-byte block different: (i*31 + 7) alone repeats every 256 bytes, so a
read of the wrong sector would go unnoticed.)  kernel.c computes the same
content (disk_byte()) to check what it reads.

usage: make-disk.py OUTPUT
"""
import sys

SIZE = 64 * 1024
MAGIC = b"KMEMVISOR MINIKERNEL DISK v1\n\0"


def image():
    data = bytearray((((i * 31 + 7) ^ (i >> 8)) & 0xFF) for i in range(SIZE))
    data[0:len(MAGIC)] = MAGIC
    return bytes(data)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make-disk.py OUTPUT")
    with open(sys.argv[1], "wb") as f:
        f.write(image())
