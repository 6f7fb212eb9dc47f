"""Answering for every process and worker: ask each peer, merge the answers.

Theory of operation: the peers (``kernel/_peers.py``) are asked the same
question with ``scope=process`` (or ``scope=worker`` for billing, which one
process per data dir answers from the shared ledger), concurrently, over a
fresh connection each, within a few seconds.  A peer that does not answer
is named in the merged answer (``"unreachable"``) rather than failing it:
the figures of the others are still true.  The merges are plain functions
of JSON documents:

* counters (``/stats``) are summed key by key;
* log lines are put in time order, each tagged with the process it came
  from, and the paging cursor becomes one position per process;
* billing rows are summed per bucket (function, minute or hour).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

from ..kernel import Peer

__all__ = ["ask_peers", "merge_billing", "merge_counters", "merge_logs", "parse_cursor"]

TIMEOUT_S = 5.0


async def ask_peers(peers: Sequence[Peer], target: str | Callable[[Peer], str],
                    token: str) -> tuple[list[tuple[Peer, Any]], list[str]]:
    """Each peer's JSON answer to ``GET target`` (or ``target(peer)``); and the
    processes that gave none.  A 404 (the peer has nothing by that name) is no
    answer but not a failure either."""
    answers: list[tuple[Peer, Any]] = []
    unreachable: list[str] = []

    async def ask(peer: Peer) -> None:
        try:
            with trio.fail_after(TIMEOUT_S):
                status, body = await _get(peer.url, target if isinstance(target, str) else target(peer), token)
            if status == 404:
                return
            if status != 200:
                raise ValueError(f"status {status}")
            answers.append((peer, json.loads(body)))
        except (OSError, ValueError, trio.TooSlowError, h11.ProtocolError):
            unreachable.append(peer.process)

    async with trio.open_nursery() as nursery:
        for peer in peers:
            nursery.start_soon(ask, peer)
    answers.sort(key=lambda answer: answer[0].process)
    return answers, sorted(unreachable)


async def _get(url: str, target: str, token: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    async with stream:
        connection = h11.Connection(h11.CLIENT)
        request = h11.Request(method="GET", target=target, headers=[
            ("host", parts.netloc), ("authorization", f"Bearer {token}"), ("connection", "close")])
        await stream.send_all((connection.send(request) or b"") + (connection.send(h11.EndOfMessage()) or b""))
        status, body = 0, bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some())
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, bytes(body)


def merge_counters(documents: Sequence[Any]) -> Any:
    """Numbers summed key by key (nested); anything else is taken from the first document."""
    first = documents[0]
    if isinstance(first, dict):
        keys = dict.fromkeys(key for document in documents if isinstance(document, dict) for key in document)
        return {key: merge_counters([document[key] for document in documents
                                     if isinstance(document, dict) and key in document]) for key in keys}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return sum(document for document in documents if isinstance(document, (int, float)))
    return first


def parse_cursor(text: str) -> dict[str, int]:
    """``process=seq,process=seq`` (what ``merge_logs`` returns as ``next``); a bare
    number (a single process's cursor) applies to every process."""
    if not text or text.isdigit():
        return {"*": int(text or 0)}
    cursor = {}
    for part in text.split(","):
        process, _, seq = part.partition("=")
        if not seq.isdigit():
            raise ValueError(text)
        cursor[process] = int(seq)
    return cursor


def merge_logs(answers: Sequence[tuple[Peer, Any]], cursor: dict[str, int], limit: int) -> tuple[list[Any], str]:
    """Lines of every process in time order (at most ``limit``), and the cursor after them."""
    lines = [{**line, "worker": peer.process} for peer, answer in answers for line in answer["lines"]]
    lines.sort(key=lambda line: (line["time"], line["worker"], line["seq"]))
    page = lines[:limit]
    positions = {peer.process: cursor.get(peer.process, cursor.get("*", 0)) for peer, _ in answers}
    for line in page:
        positions[line["worker"]] = line["seq"]
    return page, ",".join(f"{process}={seq}" for process, seq in sorted(positions.items()))


def merge_billing(row_sets: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Billing rows of several workers summed per bucket, in bucket order."""
    buckets: dict[Any, list[dict[str, Any]]] = {}
    for rows in row_sets:
        for row in rows:
            buckets.setdefault(row["bucket"], []).append(row)
    return [{**merge_counters(rows), "bucket": bucket} for bucket, rows in sorted(buckets.items())]
