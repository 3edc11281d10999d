"""The front door's batcher: requests that arrive together are decided in one pass, each answered with its own
result, a lone request waits for nothing, and a request that breaks a batch fails alone."""

from __future__ import annotations

import asyncio

import pytest

from serving.middleware import Batcher
from serving.schemas import NextActionRequest


def request(*ids: str) -> NextActionRequest:
    return NextActionRequest(customer_ids=list(ids))


class Recorder:
    """decide_many that answers each request with its customers, records every batch, and breaks on "boom"."""

    def __init__(self):
        self.batches: list[list[list[str]]] = []

    def __call__(self, reqs):
        ids = [r.ids() for r in reqs]
        self.batches.append(ids)
        if any("boom" in i for i in ids):
            raise RuntimeError("a bug")
        return [(200, ",".join(i).encode()) for i in ids]


def test_requests_arriving_together_are_decided_in_one_pass_and_each_gets_its_own_answer():
    rec = Recorder()
    batcher = Batcher(rec, max_customers=100)

    async def main():
        return await asyncio.gather(*(batcher(request(f"c{i}", f"d{i}")) for i in range(6)))

    answers = asyncio.run(main())
    assert answers == [(200, f"c{i},d{i}".encode()) for i in range(6)]
    assert rec.batches == [[[f"c{i}", f"d{i}"] for i in range(6)]]


def test_a_batch_holds_at_most_the_configured_customers_and_the_rest_follows():
    rec = Recorder()
    batcher = Batcher(rec, max_customers=5)

    async def main():
        return await asyncio.gather(*(batcher(request(*[f"c{i}-{k}" for k in range(2)])) for i in range(5)),
                                    batcher(request(*[f"big{k}" for k in range(7)])))

    answers = asyncio.run(main())
    assert [a[1].decode().split(",")[0] for a in answers] == ["c0-0", "c1-0", "c2-0", "c3-0", "c4-0", "big0"]
    assert [sum(len(r) for r in b) for b in rec.batches] == [4, 4, 2, 7]  # a request larger than the cap goes alone


def test_a_lone_request_is_answered_without_waiting_for_company():
    rec = Recorder()
    batcher = Batcher(rec, max_customers=100)

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await batcher(request("a"))
        return out, loop.time() - t0

    out, waited = asyncio.run(main())
    assert out == (200, b"a") and rec.batches == [[["a"]]]
    assert waited < 0.5  # a couple of event-loop turns, not a timer


def test_a_request_that_breaks_its_batch_fails_alone():
    rec = Recorder()
    batcher = Batcher(rec, max_customers=100)

    async def main():
        return await asyncio.gather(batcher(request("a")), batcher(request("boom")), batcher(request("b")),
                                    return_exceptions=True)

    a, boom, b = asyncio.run(main())
    assert a == (200, b"a") and b == (200, b"b")
    assert isinstance(boom, RuntimeError)
    assert rec.batches[0] == [["a"], ["boom"], ["b"]] and rec.batches[1:] == [[["a"]], [["boom"]], [["b"]]]


@pytest.mark.parametrize("n", [1, 3])
def test_a_client_gone_before_its_answer_leaves_the_others_answered(n):
    rec = Recorder()
    batcher = Batcher(rec, max_customers=100)

    async def main():
        tasks = [asyncio.ensure_future(batcher(request(f"c{i}"))) for i in range(n + 1)]
        await asyncio.sleep(0)
        tasks[0].cancel()  # the first client disconnected while waiting
        return await asyncio.gather(*tasks[1:])

    assert asyncio.run(main()) == [(200, f"c{i}".encode()) for i in range(1, n + 1)]
    assert rec.batches == [[[f"c{i}"] for i in range(n + 1)]]  # its decisions were still made (and logged)


def test_garbage_is_collected_between_batches_never_while_one_is_decided():
    import gc

    from serving.middleware import AUTOMATIC_GC, YOUNG

    deciding = {"now": False}
    during: list[bool] = []

    def note(phase, info):
        if phase == "start":
            during.append(deciding["now"])

    def decide_many(reqs):
        deciding["now"] = True
        try:
            for _ in range(2 * YOUNG):  # cycles only a collection frees, enough for one
                cycle: list = []
                cycle.append(cycle)
            return [(200, b"{}") for _ in reqs]
        finally:
            deciding["now"] = False

    batcher = Batcher(decide_many, max_customers=100)

    async def main():
        for i in range(20):
            await batcher(request(f"c{i}"))
            await asyncio.sleep(0)  # the loop turn where the batcher collects

    before = gc.get_threshold()
    gc.set_threshold(*AUTOMATIC_GC)
    gc.collect()  # counts from zero: what earlier tests allocated does not spill into the first batch
    gc.callbacks.append(note)
    try:
        asyncio.run(main())
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*before)
    assert during and not any(during)  # collections ran, all of them between batches
