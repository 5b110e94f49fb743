"""Corpus sources that are never trained on: the codec's unseen-domain test.

The corpus leans to software manuals, dictionaries and archaic prose. To measure how well the
codec encodes and decodes text from a domain it has never seen, two sources of issue 21 are
kept out of every training and validation split and used only as test data:

* ``wesnoth``: Battle for Wesnoth campaign narration and dialogue (fantasy narrative);
* ``freeciv_nations``: the Freeciv nation legends (short encyclopedic history).

A sentence of these sources seen in training would make the test measure memorization, so
``encoders.data.prepare`` puts them into the test split whatever its ``holdout_sources``
argument says, ``lcm data build-corpus`` marks them in its summary and ``lcm data shards``
warns when its input has them. The names are the corpus file stems
(``<source>.docs.jsonl.gz``), i.e. the ``source`` of the documents read from them.

This module sits in the base layer (``lcm.text``) so that the data builders, the codec's data
preparation and the CLI all read the same set.
"""

from __future__ import annotations

__all__ = ["HELDOUT_SOURCES"]

HELDOUT_SOURCES: frozenset[str] = frozenset({"freeciv_nations", "wesnoth"})
