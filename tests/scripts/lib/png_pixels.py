#!/usr/bin/env python3
"""png_pixels.py PNG [FIRST_ROW [LAST_ROW]]: prints 'WIDTH HEIGHT CHANNELS DISTINCT SHA256' for the
8-bit gray or RGB PNG's pixel rows FIRST_ROW .. LAST_ROW - 1 (default all): the decoded pixels, so
two grids can be compared whatever zlib level or row filters wrote them. Python's standard library
only (the script tests need no PIL)."""
import hashlib
import struct
import sys
import zlib


def read_png(path):
    """(width, height, channels, [row bytes]) of a non-interlaced 8-bit gray (0) or RGB (2) PNG."""
    data = open(path, 'rb').read()
    if data[:8] != b'\x89PNG\r\n\x1a\n':
        raise SystemExit(f'{path}: not a PNG file')
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (0, 2) or interlace:
        raise SystemExit(f'{path}: depth {depth}, colour type {colour}, interlace {interlace}: expected 8-bit gray or RGB')
    channels = 1 if colour == 0 else 3
    raw, stride = zlib.decompress(b''.join(idat)), width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def main():
    width, height, channels, rows = read_png(sys.argv[1])
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    last = int(sys.argv[3]) if len(sys.argv) > 3 else height
    pixels = b''.join(rows[first:last])
    print(width, height, channels, len(set(pixels)), hashlib.sha256(pixels).hexdigest())


if __name__ == '__main__':
    main()
