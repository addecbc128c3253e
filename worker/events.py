"""Job events: the database keeps every event, a capped Redis Stream per job carries them live.

``EventBus.publish`` stores the event (its per-job ``seq`` is the client's cursor) and then
appends it to the job's stream with XADD; a Redis outage loses nothing but latency, because
``follow`` reads history from the database and treats the stream as the fast path: an entry
whose ``seq`` is the next one expected is sent as is, a gap (or a quiet second) sends the reader
back to the database. ``follow`` ends after the job's terminal ``state`` event.

Ordering without loss: ``follow`` notes the stream's last entry id *before* it reads the
database, and tails the stream from there; an event is committed to the database before it is
added to the stream, so anything missing from the first read is in the tail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis

from .store import TERMINAL, Event, JobStore

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # a quiet stream sends the reader back to the database this often


def stream_key(prefix: str, job_id: str) -> str:
    return f"{prefix}job:{job_id}:events"


def is_final(event: Event) -> bool:
    return event.type == "state" and event.data.get("state") in TERMINAL


class EventBus:
    """Publishes job events (database + Redis Stream) and follows them for clients."""

    def __init__(self, store: JobStore, redis_url: str, prefix: str, maxlen: int):
        self.store, self.redis_url, self.prefix, self.maxlen = store, redis_url, prefix, maxlen
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def publish(self, job_id: str, type_: str, data: dict[str, Any]) -> Event:
        event = self.store.append_event(job_id, type_, data)
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
        client = aioredis.Redis.from_url(self.redis_url, socket_timeout=POLL_SECONDS + 5, socket_connect_timeout=5)
        key = stream_key(self.prefix, job_id)
        try:
            cursor = await self._stream_tail(client, key)
            last = after
            while True:
                events = await asyncio.to_thread(self.store.events_after, job_id, last)
                for event in events:
                    yield event.envelope()
                    last = event.seq
                    if is_final(event):
                        return
                if not events and await self._ended_before(job_id, last):
                    return
                # live: stream entries in order, until a gap or a quiet second sends us back to the database
                while True:
                    entries, cursor = await self._read(client, key, cursor)
                    if entries is None:
                        break
                    gap = False
                    for seq, envelope in entries:
                        if seq <= last:
                            continue
                        if seq != last + 1:
                            gap = True
                            break
                        yield envelope
                        last = seq
                        if envelope["type"] == "state" and envelope["data"].get("state") in TERMINAL:
                            return
                    if gap or not entries:
                        break
        finally:
            await client.aclose()

    async def _ended_before(self, job_id: str, last: int) -> bool:
        """The job ended and its final state event is at or before the cursor."""
        job = await asyncio.to_thread(self.store.job_by_id, job_id)
        return job is None or (job.state in TERMINAL and job.event_seq <= last)

    @staticmethod
    async def _stream_tail(client: aioredis.Redis, key: str) -> str:
        try:
            newest = await client.xrevrange(key, count=1)
        except redis.RedisError:
            return "0-0"
        return newest[0][0].decode() if newest else "0-0"

    @staticmethod
    async def _read(client: aioredis.Redis, key: str, cursor: str
                    ) -> tuple[list[tuple[int, dict[str, Any]]] | None, str]:
        """Up to 100 stream entries after ``cursor`` (waiting up to POLL_SECONDS); None entries
        when Redis is unreachable (the caller falls back to the database)."""
        try:
            reply = await client.xread({key: cursor}, count=100, block=int(POLL_SECONDS * 1000))
        except (redis.RedisError, OSError) as exc:
            log.warning("reading %s failed (%s); serving events from the database", key, exc)
            await asyncio.sleep(POLL_SECONDS)
            return None, cursor
        entries = []
        for _, items in reply or []:
            for entry_id, fields in items:
                cursor = entry_id.decode()
                entries.append((int(fields[b"seq"]), json.loads(fields[b"event"])))
        return entries, cursor
