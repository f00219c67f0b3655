"""The keyed work queue: due order, de-duplication, and memory that follows the keys queued."""

from __future__ import annotations

from autonomic.reconcile import WorkQueue


def test_a_discarded_key_is_never_popped() -> None:
    q = WorkQueue()
    q.add(("incident", "a"), 5.0)
    q.add(("incident", "b"), 6.0)
    q.discard(("incident", "a"))
    q.discard(("incident", "unknown"))  # nothing queued: nothing to do
    assert ("incident", "a") not in q and len(q) == 1
    assert q.pop_due(10.0) == [("incident", "b")]
    assert q.next_due() is None


def test_the_heap_is_bounded_by_the_keys_queued_when_keys_are_discarded_or_brought_forward() -> None:
    """Ten thousand keys queued an hour ahead, each discarded or brought forward (queued again
    earlier) before it was due: the heap holds about as many entries as keys are queued. Before,
    every superseded entry stayed in the heap until its (hour-away) due time came."""
    q = WorkQueue()
    for i in range(10_000):
        q.add(("incident", str(i)), 3600.0 + i)
        if i % 2:
            q.discard(("incident", str(i)))
        else:
            q.add(("incident", str(i)), 1.0)
    assert len(q) == 5_000
    assert len(q._heap) <= 2 * len(q) + 64
    assert q.pop_due(2.0) == [("incident", str(i)) for i in range(0, 10_000, 2)]
    assert q.next_due() is None
