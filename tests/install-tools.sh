#!/bin/sh
# System tools the tests drive as real parts, installed only when missing (needs root or sudo):
# curl (libcurl, as FreeSWITCH uses), Erlang/OTP (httpc, as Kazoo 4.x uses), LAME (the
# encoder FreeSWITCH's MP3s come from), PostgreSQL (the shared catalog), Chromium (the
# search page, driven headless by Playwright at /usr/bin/chromium: no browser download),
# strace (the order of a commit's syscalls, seen from outside the process), espeak-ng (speech
# for the transcription engines to hear).
set -e
need=""
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v erl >/dev/null 2>&1 || need="$need erlang-nox"
command -v lame >/dev/null 2>&1 || need="$need lame"
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need="$need postgresql"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v strace >/dev/null 2>&1 || need="$need strace"
command -v espeak-ng >/dev/null 2>&1 || need="$need espeak-ng"
[ -z "$need" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need
