#!/bin/sh
# System tools the tests drive as real parts, installed only when missing (needs root or sudo):
# curl (libcurl, as FreeSWITCH uses), Erlang/OTP (httpc, as Kazoo 4.x uses), LAME (the
# encoder FreeSWITCH's MP3s come from), PostgreSQL (the shared catalog), Chromium (the
# search page, driven headless by Playwright at /usr/bin/chromium: no browser download),
# strace (the order of a commit's syscalls, seen from outside the process), apache2-utils
# (htpasswd -B: the bcrypt hashes viewer files hold), espeak-ng (the speech the analysis
# and transcription tests put into recordings), sox with its formats (mixes that speech,
# makes tones, and decodes MP3 as a reader independent of libsndfile).
set -e
need=""
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v erl >/dev/null 2>&1 || need="$need erlang-nox"
command -v lame >/dev/null 2>&1 || need="$need lame"
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need="$need postgresql"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v strace >/dev/null 2>&1 || need="$need strace"
command -v htpasswd >/dev/null 2>&1 || need="$need apache2-utils"
command -v espeak-ng >/dev/null 2>&1 || need="$need espeak-ng"
command -v sox >/dev/null 2>&1 || need="$need sox"
sox -h 2>/dev/null | grep -q "FORMATS:.* mp3 .*ogg" || need="$need libsox-fmt-all"
[ -z "$need" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need
