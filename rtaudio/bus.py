"""The message bus: analysis results from the worker to consumers (GUI, console, event log).

Each subscriber has its own bounded queue; when it is full the oldest message is dropped and
counted (a slow GUI never blocks the worker). `deque.append`/`popleft` are atomic in CPython, so
the worker never takes a lock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    topic: str  # "spectrum", "level", "posteriors", "keyword", ...
    sample: int  # index of the first sample of the audio it describes (at `rate`)
    rate: int
    stage: str
    data: Any

    @property
    def time(self) -> float:
        return self.sample / self.rate if self.rate else 0.0


class Subscription:
    def __init__(self, topics: set[str] | None, maxlen: int) -> None:
        self.topics = topics
        self.queue: deque[Message] = deque()
        self.maxlen = maxlen
        self.dropped = 0

    def wants(self, topic: str) -> bool:
        return self.topics is None or topic in self.topics

    def push(self, msg: Message) -> None:
        if len(self.queue) >= self.maxlen:
            try:
                self.queue.popleft()
                self.dropped += 1
            except IndexError:
                pass
        self.queue.append(msg)

    def drain(self) -> list[Message]:
        out = []
        q = self.queue
        while True:
            try:
                out.append(q.popleft())
            except IndexError:
                return out


class Bus:
    def __init__(self) -> None:
        self.subscriptions: list[Subscription] = []
        self.published = 0

    def subscribe(self, topics: set[str] | list[str] | None = None, maxlen: int = 1024) -> Subscription:
        sub = Subscription(set(topics) if topics is not None else None, maxlen)
        self.subscriptions = [*self.subscriptions, sub]
        return sub

    def publish(self, msg: Message) -> None:
        self.published += 1
        for sub in self.subscriptions:
            if sub.wants(msg.topic):
                sub.push(msg)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.subscriptions)
