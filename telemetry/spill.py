"""`PendingBuffer`: the records one sink still owes, in memory first, then in a spill file, then dropped (counted).

A sink that is down keeps accepting records: up to `max_items` wait in memory; beyond that they are appended to a
file under the spill directory (`/tmp` on Lambda survives a failed flush, not the end of the environment); only
when the file reaches `spill_max_bytes` are records dropped, and every drop is counted for the next report.
Only the shipper thread touches a buffer, so it has no locks. Imports: stdlib, `.records`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
from collections import deque
from typing import Any

from telemetry.records import Rendered

_HEADER = struct.Struct(">IB")  # length of the JSON, then the level number


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        self._peeked_sizes: list[int] = []  # on-disk sizes of the spilled records the last `peek` returned
        self.dropped = 0  # since the last `take_dropped()`
        self.dropped_total = 0
        self.spilled_total = 0

    def __len__(self) -> int:
        return len(self._memory) + self._spill_count

    def adopt_orphans(self) -> int:
        """Take over spill files that dead runtime processes of this environment left in the spill directory
        (a runtime killed at its deadline, or replaced after a crash); returns how many records were adopted.

        Call it once, at init, before anything is appended. A file named with our own pid is an orphan too: pids
        repeat inside a Lambda sandbox. Another live process's file is never touched; a concurrent adopter loses
        the rename race and skips the file.
        """
        if not self._spill_dir or self._spill_path is None:
            return 0
        try:
            names = sorted(os.listdir(self._spill_dir))
        except OSError:
            return 0
        pattern = re.compile(rf"{re.escape(self.name)}-(\d+)\.spill")
        adopted = 0
        for fname in names:
            match = pattern.fullmatch(fname)
            if match is None or (int(match[1]) != os.getpid() and _alive(int(match[1]))):
                continue
            path = os.path.join(self._spill_dir, fname)
            claimed = f"{path}.adopted-by-{os.getpid()}"
            try:
                os.rename(path, claimed)
                with open(claimed, "rb") as orphan:
                    data = orphan.read()
                os.unlink(claimed)
            except OSError:
                continue
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, levelno = _HEADER.unpack_from(data, offset)
                body = data[offset + _HEADER.size : offset + _HEADER.size + length]
                if len(body) < length:
                    break  # a torn last record: the writer died mid-write
                self._spill(Rendered(event={}, data=body, levelno=levelno))
                offset += _HEADER.size + length
                adopted += 1
        return adopted

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
        """The oldest `n` records (or fewer): memory first, then read from the spill file without consuming it.

        Spilled records stay on disk until `ack`: a process killed while a sink is down keeps them for its
        successor (see `adopt_orphans`).
        """
        items = [self._memory[i] for i in range(min(n, len(self._memory)))]
        if len(items) < n and self._spill_count:
            items.extend(self._read_spill(n - len(items)))
        return items

    def ack(self, n: int) -> None:
        """The first `n` records were delivered (or given up on); forget them."""
        from_memory = min(n, len(self._memory))
        for _ in range(from_memory):
            self._memory.popleft()
        rest = n - from_memory
        if rest <= 0 or not self._spill_count:
            return
        sizes = self._peeked_sizes[:rest]
        if len(sizes) < rest:  # acked more than was peeked: learn the sizes from the file
            self._read_spill(rest)
            sizes = self._peeked_sizes[:rest]
        consumed = sum(sizes)
        self._read_offset += consumed
        self._spill_bytes -= consumed
        self._spill_count -= len(sizes)
        self._peeked_sizes = []
        if self._spill_count <= 0:
            self._reset_spill()

    def _read_spill(self, want: int) -> list[Rendered]:
        assert self._spill_path is not None
        items: list[Rendered] = []
        sizes: list[int] = []
        offset = self._read_offset
        try:
            with open(self._spill_path, "rb") as spill:
                spill.seek(offset)
                while len(items) < min(want, self._spill_count):
                    header = spill.read(_HEADER.size)
                    if len(header) < _HEADER.size:  # the file lost records it still owes: count them as dropped
                        raise OSError(f"spill file truncated at byte {offset}")
                    length, levelno = _HEADER.unpack(header)
                    data = spill.read(length)
                    if len(data) < length:
                        raise OSError(f"spill file truncated at byte {offset}")
                    event: dict[str, Any] = json.loads(data)
                    items.append(Rendered(event=event, data=data, levelno=levelno))
                    sizes.append(_HEADER.size + length)
                    offset += _HEADER.size + length
        except (OSError, ValueError) as exc:
            logging.getLogger("flightrec.spill").debug("spill file unreadable: %s", exc)
            self._drop(self._spill_count - len(items))
            self._spill_count = len(items)  # what was read is still owed; the unreadable rest is counted as lost
        self._peeked_sizes = sizes
        return items

    def _reset_spill(self) -> None:
        self._spill_count = 0
        self._read_offset = 0
        self._spill_bytes = 0
        self._peeked_sizes = []
        if self._spill_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._spill_path)
