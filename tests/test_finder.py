"""The search service behind the Search page (`finder`), against the test database, the real
local model, the offline generator and the real openai client talking to the fake server."""

from __future__ import annotations

import importlib
from email.message import EmailMessage

import numpy as np
import pytest
from sqlalchemy import create_engine, text

import finder as finder_module
from finder import Finder, WORDS_ONLY_NOTE
from mail.query import parse_query
from mail.store import import_messages
from mail.types import QueryError
from semcache import SemanticCache
from semcache.blobstores import LocalBlobStore
from semcache.budget import CostGuard
from semcache.embedders import OpenAIEmbedder, TemplatedEmbedder
from semcache.openai_images import OpenAIImageGenerator
from helpers import LABELLED, mail, raw

search_module = importlib.import_module("mail.search")  # the name mail.search is the function


class Counted:
    """The real model, with every call to it written down."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model = inner.model
        self.dimensions = inner.dimensions
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.inner.embed(texts)


@pytest.fixture
def mailbox(db, local_embedder):
    import_messages(db, "alice", raw(list(LABELLED.values())), embedder=local_embedder)
    import_messages(db, "bob", raw([mail("Bob's dog", "Bob's dog is private to Bob")]), embedder=local_embedder)
    return db


def make_finder(engine, embedder, generator, tmp_path, *, cache_embedder=None, guard=None) -> Finder:
    cache = SemanticCache(engine, cache_embedder or embedder, generator, LocalBlobStore(tmp_path / "blobs"),
                          guard=guard)
    return Finder(engine, embedder, cache)


def events(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(text("SELECT query, kind FROM semcache_events ORDER BY id")).all()


def test_one_parse_and_one_embedding_serve_the_mail_and_the_picture(mailbox, local_embedder, emoji_generator,
                                                                       tmp_path, monkeypatch):
    parsed = []

    def counting_parse(text, **kwargs):
        parsed.append(text)
        return parse_query(text, **kwargs)

    monkeypatch.setattr(finder_module, "parse_query", counting_parse)
    monkeypatch.setattr(search_module, "parse_query", lambda *a, **k: pytest.fail("the query was parsed again"))
    model = Counted(local_embedder)
    finder = make_finder(mailbox, model, emoji_generator, tmp_path)
    assert finder.shares_embedding

    found = finder.find("alice", "puppy -cat")
    assert parsed == ["puppy -cat"]
    subjects = [hit.subject for hit in found.results.hits]
    assert "Our new arrival" in subjects and "Dog walking rota" in subjects, "found by meaning"
    assert "Bob's dog" not in subjects and "Cat food order" not in subjects
    assert found.topic == "puppy" and found.vector is not None and not found.words_only
    assert model.calls == [["puppy"]]

    picture = finder.picture("alice", found)
    assert picture.status == "ready" and picture.result.kind == "generated" and picture.note == ""
    assert picture.result.image.startswith(b"\x89PNG")
    assert model.calls == [["puppy"]], "the picture lookup used the search's vector"
    assert events(mailbox) == [("puppy", "generated")]

    again = finder.find("alice", "puppy -cat", page=1, page_size=1)  # paging: no new model call
    assert [hit.subject for hit in again.results.hits] == subjects[1:2]
    assert model.calls == [["puppy"]]
    assert np.array_equal(again.vector, found.vector)
    assert events(mailbox) == [("puppy", "generated")], "a search alone looks nothing up in the cache"


def test_an_embedding_template_keeps_the_picture_in_its_own_space(mailbox, local_embedder, emoji_generator,
                                                                  tmp_path):
    model = Counted(local_embedder)
    finder = make_finder(mailbox, model, emoji_generator, tmp_path,
                         cache_embedder=TemplatedEmbedder(model, "a picture of {}"))
    assert not finder.shares_embedding

    found = finder.find("alice", "dog")
    assert found.vector is None and "Dog walking rota" in [hit.subject for hit in found.results.hits]
    assert model.calls == [["dog"]]
    picture = finder.picture("alice", found)
    assert picture.status == "ready"
    assert model.calls == [["dog"], ["a picture of dog"]]


def test_an_embedding_outage_leaves_the_words(mailbox, emoji_generator, tmp_path, fake_openai):
    remote = OpenAIEmbedder(fake_openai.api_key, base_url=fake_openai.base_url, dimensions=384, max_retries=0)
    finder = make_finder(mailbox, remote, emoji_generator, tmp_path)
    fake_openai.fail_next(status=500, times=10, path="/v1/embeddings")

    found = finder.find("alice", "invoice")
    assert found.words_only and "Invoice 2291" in [hit.subject for hit in found.results.hits]
    picture = finder.picture("alice", found)
    assert picture.status == "failed" and picture.note.startswith("No picture this time: ")
    assert fake_openai.api_key not in picture.note
    assert len(fake_openai.requests_to("/v1/embeddings")) == 1, "the failed model is not asked twice"
    assert WORDS_ONLY_NOTE.startswith("Matched by the words only")


def test_picture_outcomes_are_sentences_not_exceptions(mailbox, local_embedder, emoji_generator, tmp_path,
                                                       fake_openai):
    over = make_finder(mailbox, local_embedder, emoji_generator, tmp_path,
                       guard=CostGuard(mailbox, images_per_user=0, budget_usd=None))
    picture = over.picture("alice", over.find("alice", "dog"))
    assert picture.status == "over_budget" and picture.note.startswith("No new picture: ")
    assert picture.result is None

    images = OpenAIImageGenerator(fake_openai.api_key, base_url=fake_openai.base_url, max_retries=0)
    broken = make_finder(mailbox, local_embedder, images, tmp_path)
    fake_openai.fail_next(status=500, times=5, path="/v1/images/generations")
    picture = broken.picture("alice", broken.find("alice", "cat"))
    assert picture.status == "failed" and picture.note.startswith("No picture this time: ")
    assert fake_openai.api_key not in picture.note

    found = make_finder(mailbox, local_embedder, emoji_generator, tmp_path).find("alice", "invoice")
    nowhere = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    down = make_finder(nowhere, local_embedder, emoji_generator, tmp_path)
    picture = down.picture("alice", found)
    assert picture.status == "database_down"
    assert picture.note == "No picture this time: the image cache is not answering."


def test_filters_only_has_no_picture_and_bad_queries_are_refused(mailbox, local_embedder, emoji_generator,
                                                                  tmp_path):
    finder = make_finder(mailbox, local_embedder, emoji_generator, tmp_path)
    found = finder.find("alice", "from:alex")
    assert found.topic == "" and found.results.hits and all("alex" in h.sender for h in found.results.hits)
    assert finder.picture("alice", found).status == "no_topic"
    assert events(mailbox) == []
    with pytest.raises(QueryError):
        finder.find("alice", "after:someday")


def test_a_conversation_is_the_owners_thread(db, local_embedder, emoji_generator, tmp_path):
    first = EmailMessage()
    first["From"], first["To"], first["Subject"] = "Ann <ann@example.com>", "alice@example.org", "Picnic"
    first["Message-ID"] = "<picnic@example.com>"
    first.set_content("Picnic on Saturday?")
    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = "Alice <alice@example.org>", "ann@example.com", "Re: Picnic"
    reply["Message-ID"], reply["In-Reply-To"] = "<picnic-re@example.org>", "<picnic@example.com>"
    reply["References"] = "<picnic@example.com>"
    reply.set_content("Yes, I'll bring the cake.")
    import_messages(db, "alice", raw([first.as_bytes(), reply.as_bytes()]), embedder=local_embedder)
    finder = make_finder(db, local_embedder, emoji_generator, tmp_path)

    hit = next(h for h in finder.find("alice", "cake").results.hits if h.subject == "Re: Picnic")
    assert [m.subject for m in finder.conversation("alice", hit.id)] == ["Picnic", "Re: Picnic"]
    assert finder.conversation("bob", hit.id) is None
