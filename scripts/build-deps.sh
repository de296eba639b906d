#!/usr/bin/env bash
# What the build itself needs beyond Rust, installed when missing (fresh
# Debian 12): OpenSSL for CoAP over DTLS, libdbus for the BLE radio
# (btleplug), and pkg-config, through which their -sys crates find them.
set -euo pipefail

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
pkg-config --exists dbus-1 2>/dev/null || missing+=(libdbus-1-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing build dependencies: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
