"""Text for the terminal (autonomic.printable): counts with their nouns."""

from __future__ import annotations

from autonomic.printable import counted


def test_a_count_of_one_takes_the_singular_and_any_other_the_plural() -> None:
    """Before: "ok (1 services, 16 patterns)" from `autonomic check`."""
    assert [counted(n, "service") for n in (0, 1, 2)] == ["0 services", "1 service", "2 services"]
    assert [counted(n, "entry", "entries") for n in (1, 16)] == ["1 entry", "16 entries"]
