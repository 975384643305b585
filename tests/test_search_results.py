"""What a search returns beyond its first page: true totals, the order, conversations, and
nothing for words no message is about (the real database and the real local model)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from helpers import LABELLED, mail, raw
from mail.search import search
from mail.store import import_messages

START = datetime(2024, 1, 1, 9, tzinfo=timezone.utc)


def invoices(n: int) -> list[bytes]:
    """``n`` invoices a day apart, the first the oldest."""
    return [mail(f"Invoice {i:04d} for the garden work", f"Invoice {i:04d}: the garden work of week {i}, due in "
                 "30 days.", date=START + timedelta(days=i)) for i in range(n)]


def every_page(engine, owner, query, embedder, page_size=20, **view) -> tuple[int, list]:
    first = search(engine, owner, query, embedder=embedder, limit=page_size, **view)
    hits = list(first.hits)
    for page in range(1, -(-first.total // page_size) + 1):
        hits += search(engine, owner, query, embedder=embedder, limit=page_size, offset=page * page_size,
                       **view).hits
    return first.total, hits


def test_the_total_counts_every_match_and_every_one_can_be_paged_to(db, local_embedder):
    """More matches than the two rankings' candidates together (2 × 100): the total is all of
    them, and paging to the last page shows the rest, each message once."""
    import_messages(db, "alice", raw(invoices(230) + list(LABELLED.values())), embedder=local_embedder)
    total, hits = every_page(db, "alice", "invoice", local_embedder)
    ids = [h.id for h in hits]
    assert len(ids) == len(set(ids)) == total
    assert total >= 231  # 230 garden invoices and "Invoice 2291"
    assert sum(h.subject.startswith("Invoice") for h in hits) == 231
    last = search(db, "alice", "invoice", embedder=local_embedder, limit=20, offset=(total - 1) // 20 * 20)
    assert len(last.hits) == total - (total - 1) // 20 * 20
    assert search(db, "alice", "invoice", embedder=local_embedder).word_matches == 231


@pytest.mark.parametrize("threads", [False, True])
def test_newest_and_oldest_order_every_page_by_date(db, local_embedder, threads):
    import_messages(db, "alice", raw(invoices(45)), embedder=local_embedder)
    for sort, reverse in (("newest", True), ("oldest", False)):
        total, hits = every_page(db, "alice", "garden invoice", local_embedder, sort=sort, threads=threads)
        dates = [h.date for h in hits]
        assert total == 45 and dates == sorted(dates, reverse=reverse)
    relevance = search(db, "alice", "invoice 0007", embedder=local_embedder)
    assert relevance.hits[0].subject == "Invoice 0007 for the garden work"


def conversation(subject: str, bodies: list[str], start: datetime) -> list[bytes]:
    root = f"<{subject.replace(' ', '.')}.0@example.com>"
    messages = [mail(subject, bodies[0], message_id=root, date=start)]
    for i, body in enumerate(bodies[1:], 1):
        messages.append(mail(f"Re: {subject}", body, message_id=f"<{subject.replace(' ', '.')}.{i}@example.com>",
                             references=root, date=start + timedelta(hours=i)))
    return messages


def test_grouped_by_conversation_a_row_is_a_thread_with_its_message_count(db, local_embedder):
    messages = (conversation("Garden party", ["The garden party is on Saturday.", "Shall I bring the garden "
                                              "chairs?", "Yes please, and the lanterns."], START)
                + conversation("Garden hose", ["The garden hose leaks again."], START + timedelta(days=1))
                + conversation("Board games night", ["Bring a game.", "I'll bring chess."], START))
    import_messages(db, "alice", raw(messages), embedder=local_embedder)

    flat = search(db, "alice", "garden", embedder=local_embedder)
    grouped = search(db, "alice", "garden", embedder=local_embedder, threads=True)
    assert sum("Garden party" in h.subject for h in flat.hits) >= 2
    assert grouped.total == 2 and len(grouped.hits) == 2
    by_thread = {h.subject.removeprefix("Re: "): h for h in grouped.hits}
    assert by_thread["Garden party"].thread_size == 3 and by_thread["Garden party"].thread_matches >= 2
    assert by_thread["Garden hose"].thread_size == 1
    total, hits = every_page(db, "alice", "garden", local_embedder, page_size=1, threads=True)
    assert total == 2 and len({h.thread_id for h in hits}) == 2, "paging goes over conversations"
    newest = search(db, "alice", "garden", embedder=local_embedder, threads=True, sort="newest")
    assert [h.subject for h in newest.hits][0] == "Garden hose"


ODD = [mail("Password reset code", "Your code is QXZ-7731-VLR."), mail("asdf", "qwerty asdf jkl"),
       mail("Order KLB-4421 shipped", "Tracking number ZX9QV7."), mail("Re: zorp", "zorp zorp"),
       mail("Newsletter", "The Quarterly Zine of Odd Words: flibbertigibbet, snollygoster, cattywampus.")]
"""Mail of codes and odd words: within 0.6-0.71 of the made-up words below, where the old cut of
0.8 served them as matches."""


@pytest.mark.parametrize("word", ["xqzvlorptak", "zimquattle", "frondibix"])
def test_a_made_up_word_finds_nothing(db, local_embedder, word):
    import_messages(db, "alice", raw(invoices(30) + list(LABELLED.values()) + ODD), embedder=local_embedder)
    results = search(db, "alice", word, embedder=local_embedder)
    assert results.total == 0 and results.hits == []


def test_mail_close_in_meaning_is_found_and_said_to_be_only_that(db, local_embedder):
    import_messages(db, "alice", raw(invoices(30) + list(LABELLED.values())), embedder=local_embedder)
    results = search(db, "alice", "canine", embedder=local_embedder)
    assert results.word_matches == 0 and results.meaning_only
    assert "Dog walking rota" in [h.subject for h in results.hits]
    assert not search(db, "alice", "dog", embedder=local_embedder).meaning_only


def test_an_unknown_order_is_refused(db):
    with pytest.raises(ValueError, match="sort"):
        search(db, "alice", "invoice", sort="sideways")
