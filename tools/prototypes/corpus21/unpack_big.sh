#!/bin/sh
# Selective unpacking of the big game-data packages (only the text we need).
set -e
cd "$(dirname "$0")"
sel() { pkg=$1; shift; mkdir -p x/$pkg; [ -f x/$pkg/.unpacked ] && return 0
  dpkg-deb --fsys-tarfile deb/${pkg}_*.deb | tar -x -C x/$pkg --wildcards "./usr/share/doc/$pkg/copyright" "$@" || true
  touch x/$pkg/.unpacked; }
sel stellarium-data './usr/share/stellarium/skycultures/*/description.en.utf8' './usr/share/stellarium/skycultures/*/info.ini' './usr/share/stellarium/landscapes/*/description.en.utf8'
sel naev-data './usr/share/naev/dat/missions/*' './usr/share/naev/dat/events/*' './usr/share/naev/dat/assets/*' './usr/share/naev/dat/factions/*' './usr/share/naev/dat/outfits/*' './usr/share/naev/dat/ships/*' './usr/share/naev/dat/*.xml' './usr/share/naev/dat/*.lua' './usr/share/naev/dat/scripts/*'
sel freedroidrpg-data './usr/share/freedroidrpg/data/storyline/*' './usr/share/freedroidrpg/data/base/*.lua' './usr/share/freedroidrpg/data/base/titles/*'
for p in did dm dw ei httt l low nr sof sota sotbe thot trow tsg ttb utbs; do
  sel wesnoth-1.16-$p './usr/share/games/wesnoth/1.16/data/campaigns/*.cfg' './usr/share/games/wesnoth/1.16/data/campaigns/*/_main.cfg' './usr/share/games/wesnoth/1.16/data/campaigns/*/scenarios/*' './usr/share/games/wesnoth/1.16/data/campaigns/*/utils/*' './usr/share/games/wesnoth/1.16/data/campaigns/*/units/*.cfg' './usr/share/games/wesnoth/1.16/data/campaigns/*/units/*/*.cfg'
done
echo ALLDONE
