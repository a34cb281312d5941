#!/usr/bin/env bash
# make demo: the exporter against a fake Buildkite organization that keeps deploying, so that a
# newcomer sees real metrics without a Buildkite account. Ctrl-C stops both processes.
#
# Environment: DEMO_DIR (default ./demo), FAKE_ADDR (default 127.0.0.1:8089), LISTEN (default
# 127.0.0.1:10150), FAKE_WAIT (seconds to wait for the fake API, default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DEMO_DIR:-./demo}
fake_addr=${FAKE_ADDR:-127.0.0.1:8089}
listen=${LISTEN:-127.0.0.1:10150}
fake_wait=${FAKE_WAIT:-30}

die() {
  echo "demo: $*" >&2
  exit 1
}

command -v curl >/dev/null || die "curl is needed to wait for the fake API (apt-get install curl)"

# answers URL: true when something answers HTTP at URL, whatever the status (the fake answers 401
# to a request without its token, which still proves it listens).
answers() {
  local code
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null) || true
  [ -n "$code" ] && [ "$code" != 000 ]
}

# A fake or exporter left over from an earlier run (in another terminal, or one that outlived a
# killed make) would answer our readiness poll in place of the new fake and serve its own random
# organization: refuse rather than mix the two.
answers "http://$fake_addr/" && die "something already answers on http://$fake_addr (an earlier demo?); stop it or set FAKE_ADDR"
answers "http://$listen/" && die "something already answers on http://$listen (an earlier demo?); stop it or set LISTEN"

# The fake generates a new organization with random builds on every start: the previous run's
# token, catalog and stored deployments describe another organization, and a token file left
# behind would make the wait below pass before the new fake listens. Only the demo's own entries
# are removed, so that a DEMO_DIR pointing somewhere unexpected loses nothing else.
rm -rf "$dir/token" "$dir/catalog" "$dir/data" "$dir/fakebuildkite" "$dir"/.staging.*
mkdir -p "$dir"
go build -o "$dir/fakebuildkite" ./buildkite/buildkitetest/cmd/fakebuildkite

# The fake writes its token and catalog into a staging directory; they are moved into place (a
# rename, atomic on one file system) only once the fake answers, so the exporter never reads a
# half-written catalog or a token the fake does not accept yet.
staging=$(mktemp -d "$dir/.staging.XXXXXX")
"$dir/fakebuildkite" --listen "$fake_addr" --dir "$staging" --live --live.interval 15s &
fake=$!
exporter=
# However the script ends (Ctrl-C, kill, a failed wait), stop both processes and drop the staging
# directory. Bash runs an INT/TERM trap only once its foreground command returns, so the exporter
# runs in the background and the script waits for it: `kill <script>` then stops everything too.
cleanup() {
  for p in $exporter $fake; do kill "$p" 2>/dev/null || true; done
  for p in $exporter $fake; do wait "$p" 2>/dev/null || true; done
  rm -rf "$staging"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

deadline=$((SECONDS + fake_wait))
until answers "http://$fake_addr/v2/access-token"; do
  kill -0 "$fake" 2>/dev/null || die "the fake Buildkite API exited before answering on http://$fake_addr (see its error above)"
  [ "$SECONDS" -lt "$deadline" ] || die "the fake Buildkite API did not answer on http://$fake_addr within ${fake_wait}s"
  sleep 0.2
done
[ -s "$staging/token" ] && [ -d "$staging/catalog" ] || die "the fake answers but wrote no token or catalog into $staging"
mv "$staging/token" "$dir/token"
mv "$staging/catalog" "$dir/catalog"

echo "token in $dir/token, catalog in $dir/catalog, deployments stored in $dir/data"
echo "exporter on http://$listen/metrics — try: curl -s http://$listen/metrics | grep buildkite_deployments_total"
./buildkite_deployments_exporter \
  --buildkite.api-url="http://$fake_addr/v2/" \
  --buildkite.token-file="$dir/token" \
  --catalog.file="$dir/catalog" \
  --storage.path="$dir/data" \
  --poll.interval=5s \
  --web.listen-address="$listen" "$@" &
exporter=$!
wait "$exporter"
