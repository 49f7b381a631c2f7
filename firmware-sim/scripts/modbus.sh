#!/usr/bin/env bash
# Start the pump skid on Modbus TCP from a checkout: scripts/modbus.sh [PORT] [extra plcsim args]
set -o errexit -o pipefail -o nounset

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
port="${1:-5020}"
shift || true
PYTHONPATH="${here}/src${PYTHONPATH:+:${PYTHONPATH}}" exec "${python}" -m plcsim modbus \
  --host 127.0.0.1 --port "${port}" "$@"
