"""Text for the terminal (autonomic.printable): counts with their nouns."""

from __future__ import annotations

from autonomic.printable import counted, listed


def test_a_count_of_one_takes_the_singular_and_any_other_the_plural() -> None:
    """Before: "ok (1 services, 16 patterns)" from `autonomic check`."""
    assert [counted(n, "service") for n in (0, 1, 2)] == ["0 services", "1 service", "2 services"]
    assert [counted(n, "entry", "entries") for n in (1, 16)] == ["1 entry", "16 entries"]


def test_a_float_count_is_written_as_g_and_is_singular_only_at_one() -> None:
    """For days and the like: "over 1 day", not "over 1.0 days" or "over 1 days"."""
    assert [counted(n, "day") for n in (1.0, 0.5, 2.0, 30.0)] == ["1 day", "0.5 days", "2 days", "30 days"]


def test_a_list_of_names_takes_its_noun_singular_only_for_one_name() -> None:
    """Before: "metric(s) cpu watched twice", "ignored column(s) host"."""
    assert listed(["cpu"], "metric") == "metric cpu"
    assert listed(["cpu", "mem"], "metric") == "metrics cpu, mem"
    assert listed(("a", "b"), "entry", "entries") == "entries a, b"
