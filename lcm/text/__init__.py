"""Plain-text tools below every model: document readers and the sentence segmenter.

They need nothing but the standard library, so both the codec (which reads its training
text) and the concept data pipeline (:mod:`lcm.data`) build on them. ``lcm.data`` re-exports
the names users call (``from lcm.data import split_sentences``).
"""

from lcm.text.readers import DataError, Document, ReadStats, iter_documents, read_documents
from lcm.text.segment import segment_document, split_paragraphs, split_sentences, text_sentences

__all__ = [
    "DataError",
    "Document",
    "ReadStats",
    "iter_documents",
    "read_documents",
    "segment_document",
    "split_paragraphs",
    "split_sentences",
    "text_sentences",
]
