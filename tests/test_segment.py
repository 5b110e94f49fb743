"""Sentence segmentation: tricky cases with exact splits, the length cap, real documents."""

from __future__ import annotations

import gzip
import json
import time
import unicodedata

import pytest
from conftest import REPO

from lcm.text.segment import segment_document, split_paragraphs, split_sentences, text_sentences

FIXTURES = REPO / "tests" / "fixtures"


def _squash(text: str) -> str:
    """Text without any whitespace, NFC: what segmentation must preserve."""
    return "".join(unicodedata.normalize("NFC", text).split())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # abbreviations: titles, Latin, etc.
        (
            "Dr. Smith met Mrs. Jones at 5 p.m. yesterday. They talked.",
            ["Dr. Smith met Mrs. Jones at 5 p.m. yesterday.", "They talked."],
        ),
        (
            "Use a list, e.g. Python or Rust, i.e. a language. Then stop.",
            ["Use a list, e.g. Python or Rust, i.e. a language.", "Then stop."],
        ),
        ("Apples, pears, etc. The rest was eaten.", ["Apples, pears, etc.", "The rest was eaten."]),
        ("See Fig. 3 for details. No. 5 is here.", ["See Fig. 3 for details.", "No. 5 is here."]),
        (
            "Mr. and Mrs. Smith live on Main St. The shop is on St. Paul's road.",
            ["Mr. and Mrs. Smith live on Main St.", "The shop is on St. Paul's road."],
        ),
        # acronyms: no split before a name, split before a sentence opener
        (
            "He lived in the U.S. He then moved. The U.S. Army came to Washington, D.C. on Monday.",
            [
                "He lived in the U.S.",
                "He then moved.",
                "The U.S. Army came to Washington, D.C. on Monday.",
            ],
        ),
        # decimals, versions, URLs, file names
        (
            "Pi is 3.14 or so. Install v2.0 from example.com today. Then run setup.py. It works.",
            [
                "Pi is 3.14 or so.",
                "Install v2.0 from example.com today.",
                "Then run setup.py.",
                "It works.",
            ],
        ),
        # initials (including an initial "I." that is not the pronoun)
        (
            "J. R. R. Tolkien wrote it. J. I. Smith agreed. Plan B. The next step.",
            ["J. R. R. Tolkien wrote it.", "J. I. Smith agreed.", "Plan B.", "The next step."],
        ),
        # quotes: a question inside quotes followed by lower case is one sentence
        (
            '"Is it?" she asked. "Go!" He ran. He said "Stop." Then he left.',
            ['"Is it?" she asked.', '"Go!"', "He ran.", 'He said "Stop."', "Then he left."],
        ),
        (
            "\u201cIs it?\u201d she asked. \u201cYes.\u201d He nodded.",
            ["\u201cIs it?\u201d she asked.", "\u201cYes.\u201d", "He nodded."],
        ),
        # ellipses
        (
            "I waited... and waited... Then it came. Wait\u2026 What?!",
            ["I waited... and waited...", "Then it came.", "Wait\u2026", "What?!"],
        ),
        # brackets, a list number opening a sentence, Austen's glued dashes
        (
            "He left. (This was later.) Fine.",
            ["He left.", "(This was later.)", "Fine."],
        ),
        ("1. Introduction", ["1. Introduction"]),
        (
            "not at all in the shape of consciousness.--Miss Taylor married. Oh!--I see.",
            [
                "not at all in the shape of consciousness.--",
                "Miss Taylor married.",
                "Oh!--",
                "I see.",
            ],
        ),
    ],
)
def test_tricky_splits(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_bullets_and_newlines() -> None:
    text = (
        "Features:\n- fast\n- small and\n  cheap\n* robust\n\u2022 safe\n1. one\n2) two\n"
        "a) alpha\n(b) beta\nThe end of\nthe list."
    )
    assert split_sentences(text) == [
        "Features:",
        "- fast",
        "- small and cheap",  # an indented line continues its bullet
        "* robust",
        "\u2022 safe",
        "1. one",
        "2) two",
        "a) alpha",
        "(b) beta",
        "The end of the list.",  # a capitalized unindented line ends the list; \n is a space
    ]


def test_blank_lines_are_breaks_and_whitespace_is_normalized() -> None:
    text = "First  part\tof it\nstill first\n\n  \nSecond para\r\n\r\nThird\u00a0one"
    assert split_sentences(text) == ["First part of it still first", "Second para", "Third one"]
    assert split_paragraphs(text) == [
        "First  part\tof it\nstill first",
        "Second para",
        "Third\u00a0one",
    ]


def test_nfc_and_empties() -> None:
    assert split_sentences("Cafe\u0301 au lait. Oui.") == ["Caf\u00e9 au lait.", "Oui."]
    assert split_sentences("") == []
    assert split_sentences(" \n\t \n\n ") == []
    assert segment_document(["", "Dogs bark.", "  ", "Cats purr. Eels swim."]) == [
        "Dogs bark.",
        "Cats purr.",
        "Eels swim.",
    ]


def test_paragraph_break_is_sentence_break() -> None:
    # no terminator at the end of the first paragraph, still two sentences
    assert segment_document(["Heading without period", "Body text."]) == [
        "Heading without period",
        "Body text.",
    ]


def test_long_sentence_resplits_at_clause_boundaries() -> None:
    text = (
        "She was the youngest of the two daughters of a most affectionate, indulgent father; "
        "and had, in consequence of her sister's marriage, been mistress of his house from a "
        "very early period, and her mother had died too long ago for her to have more than an "
        "indistinct remembrance of her caresses; and her place had been supplied by an "
        "excellent woman as governess, who had fallen little short of a mother in affection."
    )
    assert split_sentences(text, max_chars=120) == [
        "She was the youngest of the two daughters of a most affectionate, indulgent father;",
        "and had, in consequence of her sister's marriage, been mistress of his house from a "
        "very early period,",
        "and her mother had died too long ago for her to have more than an indistinct "
        "remembrance of her caresses;",
        "and her place had been supplied by an excellent woman as governess,",
        "who had fallen little short of a mother in affection.",
    ]
    for cap in (256, 60, 20, 7):
        pieces = split_sentences(text, max_chars=cap)
        assert all(0 < len(p) <= cap for p in pieces), cap
        assert _squash(" ".join(pieces)) == _squash(text)


def test_whitespace_split_then_hard_cut() -> None:
    # no clause boundary: cut at a space; a single over-long token: hard cut
    words = " ".join(["word"] * 30)  # 149 chars
    pieces = split_sentences(words, max_chars=60)
    assert all(len(p) <= 60 for p in pieces) and len(pieces) == 3
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    assert split_sentences("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("abc", max_chars=0)


@pytest.mark.parametrize(
    "text",
    [
        "word " * 200_000,  # 1 MB without any punctuation
        "x" * 1_000_000,  # 1 MB single token
        "abc, def; ghi and jkl, " * 45_000,  # dense clause boundaries
        "abc def. ghi jkl. " * 55_000,  # many rejected candidates (lower case after '.')
    ],
    ids=["words", "one-token", "clauses", "lowercase-periods"],
)
def test_one_megabyte_sentence_is_capped_quickly(text: str) -> None:
    t0 = time.perf_counter()
    pieces = split_sentences(text, max_chars=256)
    elapsed = time.perf_counter() - t0
    assert pieces and all(0 < len(p) <= 256 for p in pieces)
    assert _squash("".join(pieces)) == _squash(text)
    assert elapsed < 5.0, f"took {elapsed:.1f}s"  # ~0.1 s on one core


def test_real_documents_from_fixture() -> None:
    with gzip.open(FIXTURES / "corpus_small.docs.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    assert len(docs) >= 150
    n_sentences = 0
    for doc in docs:
        for cap in (256, 120):
            sents = segment_document(doc["paragraphs"], max_chars=cap)
            assert all(s and len(s) <= cap for s in sents), doc["id"]
            assert all(s == s.strip() and "  " not in s and "\n" not in s for s in sents)
            # lossless up to whitespace: joining reproduces the normalized text
            assert _squash(" ".join(sents)) == _squash(" ".join(doc["paragraphs"])), doc["id"]
        n_sentences += len(sents)
    assert n_sentences > 2000


def test_real_austen_excerpt_exact() -> None:
    para = (
        "Sixteen years had Miss Taylor been in Mr. Woodhouse's family, less as a governess "
        "than a friend, very fond of both daughters, but particularly of Emma. Between _them_ "
        "it was more the intimacy of sisters."
    )
    assert split_sentences(para) == [
        "Sixteen years had Miss Taylor been in Mr. Woodhouse's family, less as a governess "
        "than a friend, very fond of both daughters, but particularly of Emma.",
        "Between _them_ it was more the intimacy of sisters.",
    ]


def test_text_sentences_breaks_at_blank_lines_and_caps_length() -> None:
    text = "First one. Second one.\n\nA heading\nwith a wrapped line"
    assert text_sentences(text) == ["First one.", "Second one.", "A heading with a wrapped line"]
    pieces = text_sentences("word " * 100, max_chars=64)
    assert len(pieces) > 1 and all(len(p) <= 64 for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 100
