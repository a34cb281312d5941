#!/usr/bin/env bash
# make demo: the exporter against a fake Buildkite organization that keeps deploying, so that a
# newcomer sees real metrics without a Buildkite account. Ctrl-C stops both processes.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DEMO_DIR:-./demo}
fake_addr=${FAKE_ADDR:-127.0.0.1:8089}
listen=${LISTEN:-127.0.0.1:10150}
mkdir -p "$dir"
go build -o "$dir/fakebuildkite" ./buildkite/buildkitetest/cmd/fakebuildkite
"$dir/fakebuildkite" --listen "$fake_addr" --dir "$dir" --live --live.interval 15s &
fake=$!
trap 'kill $fake 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$dir/token" ] && break; sleep 0.1; done
echo "exporter on http://$listen/metrics — try: curl -s http://$listen/metrics | grep buildkite_deployments_total"
./buildkite_deployments_exporter \
  --buildkite.api-url="http://$fake_addr/v2/" \
  --buildkite.token-file="$dir/token" \
  --catalog.file="$dir/catalog" \
  --storage.path="$dir/data" \
  --poll.interval=5s \
  --web.listen-address="$listen" "$@"
