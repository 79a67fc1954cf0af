#!/bin/sh
# SPDX-License-Identifier: MIT
# Write connhost(1) in roff from `connhost --help` and `--version`, so the
# man page and the help text have one source (host/cli.c) and cannot
# disagree. Usage: help2man.sh PATH/TO/connhost > connhost.1
set -eu
bin=$1
version=$("$bin" --version | sed -n '1s/^connhost \([^ ]*\).*/\1/p')
"$bin" --help | awk -v version="$version" '
function esc(s) {
  gsub(/\\/, "\\e", s)
  gsub(/-/, "\\-", s)
  if (s ~ /^[.'\'']/) s = "\\&" s
  return s
}
function flush() {
  if (term != "") { print ".TP"; print "\\fB" esc(term) "\\fR"; print esc(text) }
  term = ""; text = ""
}
BEGIN {
  print ".TH CONNHOST 1 \"\" \"connhost " version "\" \"User Commands\""
  print ".SH NAME"
  print "connhost \\- identity\\-governance connector host"
  section = "usage"
}
NR == 1 {
  sub(/^usage: connhost /, "")
  print ".SH SYNOPSIS"
  print ".B connhost"
  print esc($0)
  print ".SH DESCRIPTION"
  next
}
/^Commands:$/ { flush(); print ".SH COMMANDS"; section = "list"; entry = "^  [a-z]"; next }
/^Options:$/ { flush(); print ".SH OPTIONS"; section = "list"; entry = "^ +-"; next }
/^$/ {
  flush()
  if (section == "list") section = "after"
  else if (section != "after") print ".PP"
  next
}
section == "list" && $0 ~ entry {
  flush()
  line = $0; sub(/^ +/, "", line)
  # the term ends at the first run of two or more spaces
  if (match(line, /  +/)) {
    term = substr(line, 1, RSTART - 1); text = substr(line, RSTART + RLENGTH)
  } else { term = line; text = "" }
  next
}
section == "list" { line = $0; sub(/^ +/, "", line); text = text " " line; next }
section == "after" { print ".SH NOTES"; section = "tail" }
{ print esc($0) }
END {
  flush()
  print ".SH SEE ALSO"
  print "The configuration reference (docs/config.md) and running it as a service"
  print "(docs/serve.md) in the connhost sources."
}'
