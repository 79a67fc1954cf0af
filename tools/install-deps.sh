#!/bin/sh
# SPDX-License-Identifier: MIT
# Install what connhost needs to build, test and run its demo, from Debian's
# packages only. Safe to run again: installs only what is missing.
set -eu

PKGS="build-essential autoconf automake libtool pkg-config make
libcurl4-openssl-dev libjson-c-dev libjsmn-dev libyaml-dev libmicrohttpd-dev
libsqlite3-dev sqlite3 libpq-dev postgresql check
libsubunit-dev
python3 python3-yaml openssl ca-certificates valgrind
chromium"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing:$missing (run as root, or install them)" >&2
    exit 1
  fi
  echo "install-deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
