"""Job events: the database keeps every event, a capped Redis Stream per job carries them live.

``EventBus.publish`` stores the event (its per-job ``seq`` is the client's cursor) and then
appends it to the job's stream with XADD; a Redis outage loses nothing but latency, because
``follow`` reads history from the database and treats the stream as the fast path: an entry
whose ``seq`` is the next one expected is sent as is, a gap sends the reader back to the
database. ``follow`` ends after the job's terminal ``state`` event.

One tail per job and process: all followers of a job in one API process share a ``JobFeed``,
a task that blocks on XREAD for the job's stream and hands each batch to every follower's inbox.
When the stream is quiet for a second (or Redis is unreachable), the feed, not each follower,
asks the database for events the stream may have missed. So N subscribers of one job cost one
Redis connection, one XREAD and one JSON decode per event, and one database poll per quiet
second, instead of N of each.

Ordering without loss: a follower joins the feed (which noted the stream's last entry id when it
started) *before* it reads the database, and an event is committed to the database before it is
added to the stream; so anything missing from the follower's first read reaches its inbox, either
from the stream or from the feed's database poll. A follower that sees a gap in ``seq`` (an XADD
failed, or its inbox overflowed) reads the missing events from the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from .states import TERMINAL
from .store import Event, Store

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # a quiet stream sends the feed back to the database this often
INBOX_BATCHES = 1000  # a follower this far behind drops its inbox and catches up from the database

Entry = tuple[int, dict[str, Any]]  # (seq, envelope)
# XRANGE/XREAD replies as this module's clients get them (RESP2, responses not decoded); redis-py
# types them as the union over every protocol and decoding setting
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]  # (entry id, fields)


def stream_key(prefix: str, job_id: str) -> str:
    return f"{prefix}job:{job_id}:events"


def is_final(envelope: dict[str, Any]) -> bool:
    return envelope["type"] == "state" and envelope["data"].get("state") in TERMINAL


class EventBus:
    """Publishes job events (database + Redis Stream) and follows them for clients."""

    def __init__(self, store: Store, redis_url: str, prefix: str, maxlen: int):
        self.store, self.redis_url, self.prefix, self.maxlen = store, redis_url, prefix, maxlen
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        # the feeds of each event loop (an API process has one; test clients may start others)
        self._feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, JobFeed]] = \
            weakref.WeakKeyDictionary()

    def publish(self, job_id: str, type_: str, data: dict[str, Any]) -> Event:
        event = self.store.events.append(job_id, type_, data)
        self.push(event)
        return event

    def push(self, event: Event) -> None:
        """XADD an event already stored in the database (best effort: the database has it)."""
        try:
            self._redis.xadd(
                stream_key(self.prefix, event.job_id),
                {"seq": event.seq, "event": json.dumps(event.envelope())},
                maxlen=self.maxlen, approximate=True,
            )
        except redis.RedisError as exc:
            log.warning("event %s/%s not streamed (%s); it is in the database", event.job_id, event.seq, exc)

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()

    async def follow(self, job_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """Event envelopes of ``job_id`` with ``seq > after``: history, then live, up to and
        including the terminal ``state`` event (at once when the job already ended before ``after``)."""
        feed = self._feed(job_id)
        inbox = await feed.join()
        try:
            last = after
            async for envelope in self._from_database(job_id, last):
                yield envelope
                last = envelope["id"]
                if is_final(envelope):
                    return
            if await self._ended_before(job_id, last):
                return
            while True:
                batch = await inbox.get()
                if batch is None:  # the inbox overflowed: catch up from the database
                    batch = []
                    async for envelope in self._from_database(job_id, last):
                        batch.append((envelope["id"], envelope))
                for seq, envelope in batch:
                    if seq <= last:
                        continue
                    if seq != last + 1:  # a gap: the missing events are in the database
                        async for missed in self._from_database(job_id, last, before=seq):
                            yield missed
                            last = missed["id"]
                            if is_final(missed):
                                return
                        if seq <= last:
                            continue
                    yield envelope
                    last = seq
                    if is_final(envelope):
                        return
        finally:
            feed.leave(inbox)

    def _feed(self, job_id: str) -> JobFeed:
        feeds = self._feeds.setdefault(asyncio.get_running_loop(), {})
        feed = feeds.get(job_id)
        if feed is None:
            feed = feeds[job_id] = JobFeed(self, job_id, feeds)
        return feed

    async def _from_database(self, job_id: str, after: int, before: int | None = None
                             ) -> AsyncIterator[dict[str, Any]]:
        """Stored envelopes with ``after < seq`` (and ``seq < before``), page by page."""
        while True:
            events = await asyncio.to_thread(self.store.events.after, job_id, after)
            for event in events:
                if before is not None and event.seq >= before:
                    return
                yield event.envelope()
                after = event.seq
            if len(events) < 1000:
                return

    async def _ended_before(self, job_id: str, last: int) -> bool:
        """The job ended and its final state event is at or before the cursor."""
        job = await asyncio.to_thread(self.store.jobs.by_id, job_id)
        return job is None or (job.state in TERMINAL and job.event_seq <= last)


class Inbox:
    """A follower's queue of batches from its feed; ``None`` from ``get`` means it overflowed
    (the follower was too slow) and must catch up from the database."""

    def __init__(self) -> None:
        self._batches: deque[list[Entry]] = deque()
        self._overflowed = False
        self._ready = asyncio.Event()

    def put(self, batch: list[Entry]) -> None:
        if len(self._batches) >= INBOX_BATCHES:
            self._batches.clear()
            self._overflowed = True
        elif not self._overflowed:
            self._batches.append(batch)
        self._ready.set()

    async def get(self) -> list[Entry] | None:
        while not self._batches and not self._overflowed:
            self._ready.clear()
            await self._ready.wait()
        if self._overflowed:
            self._overflowed = False
            return None
        return self._batches.popleft()


class JobFeed:
    """The live tail of one job's stream in one process, shared by all its followers; it stops
    when the last follower leaves."""

    def __init__(self, bus: EventBus, job_id: str, registry: dict[str, JobFeed]):
        self.bus, self.job_id, self._registry = bus, job_id, registry
        self.key = stream_key(bus.prefix, job_id)
        self.inboxes: set[Inbox] = set()
        self._started = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def join(self) -> Inbox:
        """A new follower's inbox; it receives every entry the feed reads from now on."""
        inbox = Inbox()
        self.inboxes.add(inbox)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"feed {self.job_id}")
        try:
            await self._started.wait()  # the stream position is noted: reading the database is safe now
        except BaseException:
            self.leave(inbox)
            raise
        return inbox

    def leave(self, inbox: Inbox) -> None:
        self.inboxes.discard(inbox)
        if not self.inboxes:
            if self._registry.get(self.job_id) is self:
                del self._registry[self.job_id]
            if self._task is not None:
                self._task.cancel()

    def _send(self, batch: list[Entry]) -> None:
        for inbox in self.inboxes:
            inbox.put(batch)

    async def _run(self) -> None:
        store = self.bus.store
        client = aioredis.Redis.from_url(self.bus.redis_url, socket_timeout=POLL_SECONDS + 5,
                                         socket_connect_timeout=5)
        try:
            cursor = await self._stream_tail(client)
            newest = await self._newest_stored()  # the newest seq the feed knows of
            self._started.set()
            while True:
                entries, cursor = await self._read(client, cursor)
                if not entries:  # quiet, or Redis unreachable: look for what the stream may lack
                    try:
                        events = await asyncio.to_thread(store.events.after, self.job_id, newest)
                    except Exception as exc:  # the database is down: followers wait, nothing is lost
                        log.warning("polling the events of %s failed (%s)", self.job_id, exc)
                        await asyncio.sleep(POLL_SECONDS)
                        continue
                    entries = [(e.seq, e.envelope()) for e in events]
                if entries:
                    newest = max(newest, entries[-1][0])
                    self._send(entries)
        finally:
            await client.aclose()

    async def _newest_stored(self) -> int:
        """The job's newest event seq in the database (retried while the database is down)."""
        while True:
            try:
                job = await asyncio.to_thread(self.bus.store.jobs.by_id, self.job_id)
                return job.event_seq if job is not None else 0
            except Exception as exc:
                log.warning("reading job %s failed (%s)", self.job_id, exc)
                await asyncio.sleep(POLL_SECONDS)

    async def _stream_tail(self, client: aioredis.Redis) -> str:
        try:
            newest = cast(StreamEntries, await client.xrevrange(self.key, count=1))
        except redis.RedisError:
            return "0-0"
        return newest[0][0].decode() if newest else "0-0"

    async def _read(self, client: aioredis.Redis, cursor: str) -> tuple[list[Entry] | None, str]:
        """Up to 100 stream entries after ``cursor`` (waiting up to POLL_SECONDS); None entries
        when Redis is unreachable (the caller falls back to the database)."""
        try:
            reply = cast(list[tuple[bytes, StreamEntries]] | None,
                         await client.xread({self.key: cursor}, count=100, block=int(POLL_SECONDS * 1000)))
        except (redis.RedisError, OSError) as exc:
            log.warning("reading %s failed (%s); serving events from the database", self.key, exc)
            await asyncio.sleep(POLL_SECONDS)
            return None, cursor
        entries = []
        for _, items in reply or []:
            for entry_id, fields in items:
                cursor = entry_id.decode()
                entries.append((int(fields[b"seq"]), json.loads(fields[b"event"])))
        return entries, cursor
