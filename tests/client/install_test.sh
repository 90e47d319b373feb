#!/bin/sh
# install_test.sh — libpinpool as a user gets it: `cmake --install` into two temporary
# prefixes, then, for each, pinpool.pc found through PKG_CONFIG_PATH must point inside that
# prefix (the .pc is relocatable), and a C++ program (cxx_client.cpp) built with g++ from
# those flags against the installed header and library must link and run.  The first
# prefix is removed before the second is used, so nothing can lean on it.
#
# usage: install_test.sh CMAKE BUILD_DIR LIBDIR INCLUDEDIR CXX_SOURCE PKG_CONFIG [SANITIZE]
#   SANITIZE: the build's PP_SANITIZE (the installed library then needs that runtime)
# Exit 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).
set -eu
cmake=$1 build=$2 libdir=$3 includedir=$4 src=$5 pkgconfig=$6 sanitize=${7:-}

fail() { echo "install_test: FAIL: $*" >&2; exit 1; }

case $libdir$includedir in
/*) echo "install_test: skipped: absolute CMAKE_INSTALL_LIBDIR/INCLUDEDIR cannot move with" \
         "the prefix (and would install outside it)" >&2
    exit 77 ;;
esac
command -v g++ >/dev/null 2>&1 || fail "g++ not found (scripts/install-deps installs it)"

tmp=$(mktemp -d /tmp/pp-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for p in one two; do
  "$cmake" --install "$build" --prefix "$tmp/$p" --component libpinpool >"$tmp/install-$p.log" ||
    { cat "$tmp/install-$p.log" >&2; fail "cmake --install --prefix $tmp/$p"; }
done

# The real path of a directory, or nothing.
real() { (cd "$1" 2>/dev/null && pwd -P) || true; }

use_prefix() {
  P=$tmp/$1
  pcdir=$P/$libdir/pkgconfig
  [ -f "$pcdir/pinpool.pc" ] || fail "no $pcdir/pinpool.pc"
  pc() { PKG_CONFIG_PATH=$pcdir "$pkgconfig" "$@" pinpool; }
  inc=$(pc --variable=includedir) || fail "pkg-config cannot read $pcdir/pinpool.pc"
  lib=$(pc --variable=libdir)
  [ "$(real "$inc")" = "$(real "$P/$includedir")" ] ||
    fail "includedir $inc is not $P/$includedir"
  [ "$(real "$lib")" = "$(real "$P/$libdir")" ] || fail "libdir $lib is not $P/$libdir"
  cflags=$(pc --cflags)
  libs=$(pc --libs)
  case " $cflags " in *" -I$inc "*) ;; *) fail "--cflags '$cflags' lacks -I$inc" ;; esac
  case " $libs " in *" -L$lib "*) ;; *) fail "--libs '$libs' lacks -L$lib" ;; esac
  [ -f "$inc/pinpool.h" ] && [ -f "$inc/pinpool_err.h" ] || fail "headers missing in $inc"

  san=
  [ -n "$sanitize" ] && san="-fsanitize=$sanitize"
  # shellcheck disable=SC2086 # the flags are meant to split
  g++ -std=c++11 -Wall -Wextra -Werror $san "$src" $cflags $libs "-Wl,-rpath,$lib" \
    -o "$tmp/cxx-$1" || fail "g++ could not build $src against prefix $P"
  "$tmp/cxx-$1" "$tmp/no-daemon.sock" || fail "the C++ program failed (prefix $P)"
  echo "install_test: prefix $P: pinpool.pc points inside it; C++ program built and ran"
}

use_prefix one
rm -rf "$tmp/one"
use_prefix two
