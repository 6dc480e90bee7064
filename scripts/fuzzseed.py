#!/usr/bin/env python3
"""Write a seed file in Go's fuzz corpus format: fuzzseed.py DIR NAME < bytes.

Each seed is one []byte argument; the file goes to DIR/NAME.
"""
import os
import sys


def quote(b: bytes) -> str:
    out = []
    for c in b:
        ch = chr(c)
        if ch == '"' or ch == '\\':
            out.append('\\' + ch)
        elif 32 <= c < 127:
            out.append(ch)
        else:
            out.append('\\x%02x' % c)
    return '"' + ''.join(out) + '"'


def main():
    d, name = sys.argv[1], sys.argv[2]
    os.makedirs(d, exist_ok=True)
    data = sys.stdin.buffer.read()
    with open(os.path.join(d, name), 'w') as f:
        f.write('go test fuzz v1\n[]byte(%s)\n' % quote(data))


if __name__ == '__main__':
    main()
