#!/bin/sh
# System tools the tests drive as real clients: curl (libcurl, as FreeSWITCH uses) and
# Erlang/OTP (httpc, as Kazoo 4.x uses). Installed only when missing; needs root or sudo.
set -e
need=""
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v erl >/dev/null 2>&1 || need="$need erlang-nox"
[ -z "$need" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need
