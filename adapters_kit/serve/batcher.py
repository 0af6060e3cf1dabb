"""Dynamic batching: requests wait at most ``max_wait`` for others to join, up to ``max_batch_size`` inputs, and the
model answers the batch in its own thread, off the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from adapters_kit.runs.pool import Request


class QueueFull(RuntimeError):
    """More requests are waiting than the server queues; the client should retry shortly."""


@dataclass
class _Job:
    request: Request
    future: asyncio.Future


class Batcher:
    """``await submit(request)`` -> that request's answer. One model thread (``executor``) runs every batch, and
    also every hot-load and unload, so the model is never touched by two threads at once."""

    def __init__(self, predict: Callable[[list[Request]], list[Any]], executor: ThreadPoolExecutor, *,
                 max_batch_size: int, max_wait_s: float, max_queue: int, on_batch: Callable[[int], None] = None,
                 on_depth: Callable[[int], None] = None):
        self.predict, self.executor = predict, executor
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self.on_batch = on_batch or (lambda n: None)
        self.on_depth = on_depth or (lambda n: None)
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.waiting = 0
        """Requests submitted and not yet in a running batch."""
        self._held: _Job | None = None  # a job that did not fit the last batch: it starts the next one

    async def submit(self, request: Request) -> Any:
        if self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests are waiting (--max-queue {self.max_queue}); retry shortly")
        job = _Job(request, asyncio.get_running_loop().create_future())
        self._set_waiting(self.waiting + 1)
        self.queue.put_nowait(job)
        return await job.future

    async def run(self) -> None:
        """Form and run batches until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            self._set_waiting(self.waiting - len(batch))
            live = [j for j in batch if not j.future.done()]  # a request that timed out is not computed
            if not live:
                continue
            self.on_batch(sum(len(j.request.items) for j in live))
            try:
                results = await loop.run_in_executor(self.executor, self.predict, [j.request for j in live])
            except Exception as e:  # noqa: BLE001 - the batch's requests get the error; the server keeps serving
                results = [e] * len(live)
            for job, result in zip(live, results):
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    async def _collect(self, loop) -> list[_Job]:
        first = self._held or await self.queue.get()
        self._held = None
        batch, size = [first], len(first.request.items)
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if size + len(job.request.items) > self.max_batch_size:
                self._held = job
                break
            batch.append(job)
            size += len(job.request.items)
        return batch

    def _set_waiting(self, n: int) -> None:
        self.waiting = n
        self.on_depth(n)
