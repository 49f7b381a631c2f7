#!/usr/bin/env bash
# `make demo`: a local Mosquitto, firmware-sim's pump skid and the gateway, with a live view
# of the twin as the broker sees it. Ctrl-C stops everything this script started.
set -o errexit -o pipefail -o nounset
cd "$(dirname "$0")/../.."

PY=.venv/bin/python
BROKER_PORT=18830
SIM_PORT=15020
STATE=demo-state
mkdir -p "$STATE"
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "Stopping the demo..."
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  echo "Stopped. Gateway log: $STATE/edgetwin.log"
}
trap cleanup INT TERM EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 after 10 s" >&2
  return 1
}

cat > "$STATE/mosquitto.conf" <<CONF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest file $PWD/$STATE/mosquitto.log
CONF
# Each child gets its own session (setsid), so Ctrl-C reaches only this script, which then
# stops them in reverse order: the gateway first, while the broker can still take its
# offline status.
setsid "$MOSQUITTO" -c "$STATE/mosquitto.conf" & pids+=($!)
setsid "$PY" -m plcsim modbus --host 127.0.0.1 --port "$SIM_PORT" > "$STATE/plcsim.log" 2>&1 &
pids+=($!)
wait_port "$BROKER_PORT"
wait_port "$SIM_PORT"
echo "Broker on 127.0.0.1:$BROKER_PORT, simulated pump skid on 127.0.0.1:$SIM_PORT"

setsid .venv/bin/edgetwin run -c config/demo.yaml > "$STATE/edgetwin.log" 2>&1 & pids+=($!)
echo "Gateway started (log: $STATE/edgetwin.log, status: .venv/bin/edgetwin status -c config/demo.yaml)"

"$PY" hil/twinwatch.py --port "$BROKER_PORT" --base edgetwin/v1/gw-demo
