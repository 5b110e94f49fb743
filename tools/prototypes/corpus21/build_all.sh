#!/bin/sh
# Rebuild every issue-21 prototype source from Debian packages (nothing is installed).
# Needs: apt-get, dpkg-deb, tar, python3 (stdlib only). ~1.3 GB of .debs, ~60 MB unpacked.
set -e
cd "$(dirname "$0")"
mkdir -p deb x out
PKGS="endless-sky-data cataclysm-dda-data naev-data freedroidrpg-data freeciv-data stellarium-data
 wesnoth-1.16-did wesnoth-1.16-dm wesnoth-1.16-dw wesnoth-1.16-ei wesnoth-1.16-httt wesnoth-1.16-l
 wesnoth-1.16-low wesnoth-1.16-nr wesnoth-1.16-sof wesnoth-1.16-sota wesnoth-1.16-sotbe
 wesnoth-1.16-thot wesnoth-1.16-trow wesnoth-1.16-tsg wesnoth-1.16-ttb wesnoth-1.16-utbs"
todo=""; for p in $PKGS; do ls deb/${p}_*.deb >/dev/null 2>&1 || todo="$todo $p"; done
[ -z "$todo" ] || (cd deb && apt-get download -q $todo)
nice -n 10 ./unpack_big.sh        # selective tar extraction of the big game-data packages
for s in endless_sky cataclysm naev wesnoth freedroidrpg freeciv_nations stellarium; do
  nice -n 10 python3 $s.py          # small packages are dpkg-deb -x'ed on first use
done
