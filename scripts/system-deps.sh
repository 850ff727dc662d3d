#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks start as real processes, when their binaries are missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1; }
have initdb || need+=(postgresql)
have redis-server || need+=(redis-server)
have promtool || need+=(prometheus)
have prometheus-alertmanager || need+=(prometheus-alertmanager)
have podman || need+=(podman)
have wrk || need+=(wrk)
have valgrind || need+=(valgrind)
have prometheus-postgres-exporter || need+=(prometheus-postgres-exporter)
have prometheus-redis-exporter || need+=(prometheus-redis-exporter)
have victoria-metrics || need+=(victoria-metrics)
have prometheus-node-exporter || need+=(prometheus-node-exporter)
have prometheus-blackbox-exporter || need+=(prometheus-blackbox-exporter)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "telltale: missing Debian packages: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
log=${TMPDIR:-/tmp}/telltale-apt.log
echo "telltale: installing Debian packages: ${need[*]} (log: $log)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
  echo "telltale: apt-get failed; the last lines of $log:" >&2
  tail -n 25 "$log" >&2
  exit 1
fi
