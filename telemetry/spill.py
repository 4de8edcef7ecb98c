"""`PendingBuffer`: the records one sink still owes, in memory first, then in a spill file, then dropped (counted).

A sink that is down keeps accepting records: up to `max_items` wait in memory; beyond that they are appended to a
file under the spill directory (`/tmp` on Lambda survives a failed flush, not the end of the environment); only
when the file reaches `spill_max_bytes` are records dropped, and every drop is counted for the next report.
Only the shipper thread touches a buffer, so it has no locks. Imports: stdlib, msgspec, `.records`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections import deque
from typing import Any

import msgspec

from telemetry.records import Rendered

_HEADER = struct.Struct(">IB")  # length of the JSON, then the level number


class PendingBuffer:
    def __init__(
        self,
        name: str,
        max_items: int = 10_000,
        spill_dir: str | None = None,
        spill_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.max_items = max_items
        self.spill_max_bytes = spill_max_bytes
        self._memory: deque[Rendered] = deque()
        self._spill_path = os.path.join(spill_dir, f"{name}-{os.getpid()}.spill") if spill_dir else None
        self._spill_dir = spill_dir
        self._spill_count = 0
        self._spill_bytes = 0
        self._read_offset = 0
        self.dropped = 0  # since the last `take_dropped()`
        self.dropped_total = 0
        self.spilled_total = 0

    def __len__(self) -> int:
        return len(self._memory) + self._spill_count

    @property
    def spilled(self) -> int:
        return self._spill_count

    def append(self, item: Rendered) -> None:
        if len(self._memory) < self.max_items and self._spill_count == 0:
            self._memory.append(item)
            return
        self._spill(item)

    def _spill(self, item: Rendered) -> None:
        size = _HEADER.size + len(item.data)
        if self._spill_path is None or self._spill_bytes + size > self.spill_max_bytes:
            self._drop(1)
            return
        try:
            if self._spill_dir:
                os.makedirs(self._spill_dir, mode=0o700, exist_ok=True)
            with open(self._spill_path, "ab") as spill:
                spill.write(_HEADER.pack(len(item.data), min(item.levelno, 255)) + item.data)
        except OSError:
            self._drop(1)
            return
        self._spill_count += 1
        self._spill_bytes += size
        self.spilled_total += 1

    def _drop(self, n: int) -> None:
        self.dropped += n
        self.dropped_total += n

    def take_dropped(self) -> int:
        n, self.dropped = self.dropped, 0
        return n

    def peek(self, n: int) -> list[Rendered]:
        """The oldest `n` records (or fewer), refilling memory from the spill file when memory runs dry."""
        if len(self._memory) < n and self._spill_count:
            self._refill(n - len(self._memory))
        return [self._memory[i] for i in range(min(n, len(self._memory)))]

    def ack(self, n: int) -> None:
        """The first `n` records were delivered (or given up on); forget them."""
        for _ in range(min(n, len(self._memory))):
            self._memory.popleft()

    def _refill(self, want: int) -> None:
        assert self._spill_path is not None
        try:
            with open(self._spill_path, "rb") as spill:
                spill.seek(self._read_offset)
                while want > 0 and self._spill_count:
                    header = spill.read(_HEADER.size)
                    if len(header) < _HEADER.size:  # the file lost records it still owes: count them as dropped
                        raise OSError(f"spill file truncated at byte {self._read_offset}")
                    length, levelno = _HEADER.unpack(header)
                    data = spill.read(length)
                    if len(data) < length:
                        raise OSError(f"spill file truncated at byte {self._read_offset}")
                    event: dict[str, Any] = msgspec.json.decode(data)
                    self._memory.append(Rendered(event=event, data=data, levelno=levelno))
                    self._read_offset += _HEADER.size + length
                    self._spill_count -= 1
                    self._spill_bytes -= _HEADER.size + length
                    want -= 1
        except (OSError, msgspec.DecodeError) as exc:
            logging.getLogger("flightrec.spill").debug("spill file unreadable: %s", exc)
            self._drop(self._spill_count)
            self._spill_count = 0
            self._spill_bytes = 0
        if self._spill_count == 0:
            self._read_offset = 0
            self._spill_bytes = 0
            with contextlib.suppress(OSError):
                os.unlink(self._spill_path)
