#!/usr/bin/env bash
# The independent protocol peers the tests talk to, in a virtual
# environment of their own under target/ (Debian 12 refuses `pip install`
# into its Python, PEP 668): pymodbus (Modbus TCP and RTU servers),
# bacpypes3 (BACnet/IP devices), xknx (KNX devices, a tunnelling client
# of knxd) and cryptography (an Ed25519 signer independent of ours, for
# pushed configurations). Pinned: the tests rely on their behaviour
# (the peer scripts in crates/edge-gateway/tests/data/ use these versions' APIs).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${EDGE_TEST_PEERS_VENV:-target/peers-venv}
want="pymodbus==3.16.1 pyserial==3.5 bacpypes3==0.0.110 xknx==4.0.0 cryptography==46.0.3"
stamp="$venv/.installed"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
rm -rf "$venv"
# Debian's python3, not a pyenv one a developer may have first on PATH.
python=/usr/bin/python3
[ -x "$python" ] || python=python3
if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null ||
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null; }
  "$python" -m venv "$venv"
fi
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
echo "$want" >"$stamp"
