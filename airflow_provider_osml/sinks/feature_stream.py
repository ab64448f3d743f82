"""Read the features of a FeatureCollection file one at a time, so a million features never sit in memory."""

from __future__ import annotations

import json
from collections.abc import Iterator

_CHUNK = 1024 * 1024
_WHITESPACE = " \t\r\n"


def iter_features(path: str) -> Iterator[dict]:
    """Yield each member of the ``features`` array of a GeoJSON FeatureCollection file, in order.

    The collection's other members may come before ``features``; anything after the array is ignored.
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as reader:
        buffer, pos = reader.read(_CHUNK), 0
        start = buffer.find('"features"')
        while start < 0:
            more = reader.read(_CHUNK)
            if not more:
                raise ValueError(f"{path}: no 'features' array (not a FeatureCollection)")
            buffer = buffer[-16:] + more
            start = buffer.find('"features"')
        pos = start + len('"features"')
        opened = False
        while True:
            while pos < len(buffer) and buffer[pos] in _WHITESPACE + (":" if not opened else ","):
                pos += 1
            if pos >= len(buffer):
                more = reader.read(_CHUNK)
                if not more:
                    raise ValueError(f"{path}: the features array is not closed (truncated file?)")
                buffer, pos = buffer[pos:] + more, 0
                continue
            char = buffer[pos]
            if not opened:
                if char != "[":
                    raise ValueError(f"{path}: 'features' is not an array")
                opened, pos = True, pos + 1
                continue
            if char == "]":
                return
            try:
                feature, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError:
                more = reader.read(_CHUNK)
                if not more:
                    raise
                buffer, pos = buffer[pos:] + more, 0
                continue
            if end == len(buffer):  # a number or literal may continue in the next chunk: re-read to be sure
                more = reader.read(_CHUNK)
                if more:
                    buffer, pos = buffer[pos:] + more, 0
                    continue
            yield feature
            pos = end
