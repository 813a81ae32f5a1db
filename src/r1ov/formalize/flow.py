"""Rows through a stage as each becomes ready: no batch waits for another, no row for its batch.

A stage's work on one row is a chain of waits on different resources (a teacher request, a
perception tool on a worker thread, another request). Run batch by batch, each resource idles
while the others work and the slowest row holds up its whole batch, so the stage's rate is the
*sum* of their times. Here every row is its own task on one event loop: a row's request starts
the moment its perception is done, and the stage runs as fast as its slowest resource.

Bounds keep memory flat whatever the input size:

- ``in_flight`` rows are admitted at a time (between being read and being done). With the
  teacher the bottleneck, C rows wait on it and the rest, already perceived, form the bounded
  queue ahead of it; with perception the bottleneck, the rest queue for its workers.
- ``window`` rows may sit in batches whose outcome the writer has not taken yet: the batches
  behind a slow row keep going until then, and a request that hangs (up to its timeout) holds
  back only the writing of its own batch.

Outcomes come out in input order, batch by batch, and rows within a batch in input order, so
the output does not depend on which request happened to answer first.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
Rows = list[Row]
Outcome = tuple[Rows, Rows]  # (accepted, rejected)
# A row's whole journey through the stage: the row as it ends, and whether it was accepted.
RowFn = Callable[[Row], Awaitable[tuple[Row, bool]]]
_END = object()


@dataclass
class _Batch:
    size: int
    done: dict[int, tuple[Row, bool]] = field(default_factory=dict)

    def outcome(self) -> Outcome:
        ends = [self.done[i] for i in range(self.size)]
        return [row for row, ok in ends if ok], [row for row, ok in ends if not ok]


def pipelined(
    batches: Iterator[Rows],
    session: Callable[[], contextlib.AbstractAsyncContextManager[RowFn]],
    *,
    in_flight: int,
    window: int,
) -> Iterator[Outcome]:
    """One outcome per batch of ``batches``, in order. ``session()`` opens what the rows share (a
    teacher connection, worker threads) and yields the per-row function. An exception from a row
    (a stage-wide failure: per-row problems are rejections) stops every row and is raised here.

    The rows run on an event loop in a worker thread, so the caller (which writes the shards)
    never blocks it; the input iterator is advanced in a thread too (it reads files).
    """
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    loop = asyncio.new_event_loop()
    held = [0]  # rows in batches the caller has not taken yet; touched on the loop's thread only
    changed: list[asyncio.Event] = []
    main: list[asyncio.Task] = []

    async def run() -> None:
        admit = asyncio.Semaphore(in_flight)
        changed.append(asyncio.Event())
        order: deque[_Batch] = deque()

        def emit() -> None:
            while order and len(order[0].done) == order[0].size:
                results.put(("batch", order.popleft().outcome()))

        async with session() as process_row, asyncio.TaskGroup() as group:

            async def one(batch: _Batch, index: int, row: Row) -> None:
                try:
                    batch.done[index] = await process_row(row)
                finally:
                    admit.release()
                emit()

            while True:
                rows = await asyncio.to_thread(next, batches, _END)
                if rows is _END:
                    break
                # Room for the whole batch, or it is the only one held (a batch larger than the window).
                while held[0] and held[0] + len(rows) > window:
                    changed[0].clear()
                    await changed[0].wait()
                held[0] += len(rows)
                batch = _Batch(len(rows))
                order.append(batch)
                emit()  # an empty batch is done at once
                for index, row in enumerate(rows):
                    await admit.acquire()
                    group.create_task(one(batch, index, row))

    async def guarded() -> None:
        main.append(asyncio.current_task())
        try:
            await run()
        except BaseException as exc:  # every failure reaches the caller, the first of a group as itself
            while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]
            results.put(("error", exc))
        else:
            results.put(("end", None))

    def release(rows: int) -> None:  # on the loop's thread
        held[0] -= rows
        if changed:
            changed[0].set()

    thread = threading.Thread(target=loop.run_until_complete, args=(guarded(),), name="formalize-rows", daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            kind, value = results.get()
            if kind == "end":
                finished = True
                return
            if kind == "error":
                finished = True
                raise value
            yield value
            loop.call_soon_threadsafe(release, sum(map(len, value)))
    finally:
        if not finished and main:
            loop.call_soon_threadsafe(main[0].cancel)
        thread.join()
        loop.close()
