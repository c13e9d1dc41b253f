"""The requests thread: what arrives on our subscriptions, routed without blocking paho.

Owns the thread "deskpulse-requests". It takes messages from the publisher's bounded
inbox and hands them on: .../request/<verb> to the router (whose handlers post commands
to the pipeline and answer), `homeassistant/status` to the pipeline. Retained requests
are ignored (commands are never retained: replays cause "ghost switching").
"""

from __future__ import annotations

import logging
import queue
from typing import Callable

from .publisher import Incoming, Publisher
from .requests import Router, best_effort_transaction, error
from .topics import Topics
from .worker import ThreadOwner

log = logging.getLogger(__name__)


class Inbox(ThreadOwner):
    thread_name = "deskpulse-requests"

    def __init__(self, publisher: Publisher, topics: Topics, router: Router,
                 on_status: Callable[[Incoming], None] | None = None, status_topic: str | None = None) -> None:
        super().__init__()
        self.publisher = publisher
        self.topics = topics
        self.router = router
        self.on_status = on_status
        self.status_topic = status_topic

    def _run(self) -> None:
        inbox = self.publisher.incoming
        while not self._stop.is_set():
            try:
                msg = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.handle(msg)
            except Exception:  # never let one message end request handling
                log.exception("error handling a message on %s", msg.topic)

    def handle(self, msg: Incoming) -> None:
        if msg.topic == self.status_topic:
            if self.on_status is not None:
                self.on_status(msg)
            return
        verb = self.topics.verb_of(msg.topic)
        if verb is None:
            log.debug("ignoring message on %s", msg.topic)
            return
        if msg.retain:
            log.warning("ignoring retained request on %s (commands are never retained)", msg.topic)
            return
        verb = verb[:64]
        origin = dict(msg.user_properties).get("client", "?")
        publisher = self.publisher
        if msg.response_topic is not None and not self.topics.is_response(msg.response_topic):
            # Never publish where a requester says: that would let anyone who may send a
            # request make the agent write wherever the agent's own ACL allows.
            log.warning("request %s from %s refused: response topic %r is not under %s", verb, origin,
                        msg.response_topic[:200], self.topics.response(""))
            publisher.respond(msg, verb, error(f"response topic must start with {self.topics.response('')}",
                                               best_effort_transaction(msg.payload)), own_topic=True)
            return
        self.router.handle(verb, msg.payload, lambda answer: publisher.respond(msg, verb, answer), origin)
