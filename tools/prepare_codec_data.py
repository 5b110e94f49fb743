"""Build the codec's tokenizer and token arrays from a corpus folder.

Example::

    python tools/prepare_codec_data.py --corpus ../shared/data/corpus \
        --pairs ../shared/data/pairs/debian_bookworm.jsonl.gz --out ~/data/codec
"""

from encoders.data import main

if __name__ == "__main__":
    raise SystemExit(main())
