"""``lcm data build-corpus``: rebuild the English corpus and the Debian pairs from Debian.

For users without the shared data folder. On a Debian (bookworm) system with apt, it

1. runs ``apt-get update`` into a private state dir under ``--work`` (English translations
   on; ``/etc/apt`` and ``/var/lib/apt`` are left untouched),
2. builds ``<out>/pairs/debian_bookworm.jsonl.gz`` from ``apt-cache dumpavail`` joined with
   the ``Translation-en`` indexes (see :mod:`.debian_pairs`),
3. downloads the packages that carry English prose with ``apt-get download``, unpacks them
   with ``dpkg-deb -x`` (nothing is installed) and writes one
   ``<out>/corpus/<source>.docs.jsonl.gz`` per source (see :mod:`.sources`).

Only the standard library is used. Every output file is written under a temporary name and
renamed when complete. The work dir is kept when a step fails, so a re-run reuses what was
already downloaded; after a successful run it is removed unless ``--keep-work`` is given.
"""
