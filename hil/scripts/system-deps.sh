#!/usr/bin/env bash
# Install the Debian packages edgetwin's tests and demo need, only when missing.
set -o errexit -o pipefail -o nounset

missing=()
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v mbpoll >/dev/null || missing+=(mbpoll)  # a stock Modbus client for firmware-sim's tests
command -v faketime >/dev/null || missing+=(faketime)  # libfaketime: the HIL clock-jump scenario
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
