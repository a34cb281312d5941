#!/usr/bin/env bash
# make fuzz: runs every native Go fuzz target of the packages that parse outside input, one after
# another, each for FUZZTIME (default 15s). `go test -fuzz` takes one target per run, hence the
# loop. A failing input is written by Go to <package>/testdata/fuzz/<Target>/ and the run fails:
# commit that file with the fix, and `go test` replays it for good.
#
#   FUZZTIME=1m ./scripts/fuzz.sh               every target for a minute (FUZZMINIMIZETIME: see below)
#   ./scripts/fuzz.sh ./buildkite FuzzNextURL    only the targets named (package, then targets)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-15s}
# Go spends up to -fuzzminimizetime (default 60s) shrinking every new interesting input, which for
# a slow target (a page through an HTTP server) can eat a whole short run; 2s keeps most of
# FUZZTIME for fuzzing. A failing input is shrunk for as long too: rerun longer to shrink more.
minimizetime=${FUZZMINIMIZETIME:-2s}
packages=(./backstage ./config ./buildkite ./webhook)
if [ $# -gt 0 ]; then
  packages=("$1")
  shift
fi

# count_inputs prints how many inputs a target's corpus directory holds (0 when there is none).
count_inputs() {
  if [ -d "$1" ]; then
    find "$1" -type f | wc -l
  else
    echo 0
  fi
}

start=$SECONDS
ran=0
failed=()
for pkg in "${packages[@]}"; do
  # The targets are listed from the test binary, so a new Fuzz function is picked up without
  # editing this script.
  mapfile -t targets < <(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
  if [ $# -gt 0 ]; then
    targets=("$@")
  fi
  if [ ${#targets[@]} -eq 0 ]; then
    # -list prints nothing when the package does not compile: that must not pass as "no failure".
    echo "-- $pkg: no fuzz target found (does it compile? go vet $pkg)" >&2
    failed+=("$pkg")
    continue
  fi
  for target in "${targets[@]}"; do
    t0=$SECONDS
    echo "== $pkg $target ($fuzztime)"
    # -run=^$ skips the ordinary tests (make test runs them); -parallel is left to Go's default,
    # one worker per CPU.
    corpus="$pkg/testdata/fuzz/$target"
    before=$(count_inputs "$corpus")
    log=$(mktemp)
    if go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime="$minimizetime" "$pkg" 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
      echo "-- $target: no failure in $((SECONDS - t0))s"
    elif grep -q 'context deadline exceeded' "$log" && [ "$(count_inputs "$corpus")" -eq "$before" ]; then
      # Go's fuzzer reports the end of -fuzztime as a failure when it falls while an input is
      # still running, and writes no input then: nothing was found.
      echo "-- $target: no failure in $((SECONDS - t0))s (the run ended inside an input: Go reports 'context deadline exceeded', no input was written)"
    else
      echo "-- $target: FAILED after $((SECONDS - t0))s; the input is under $corpus/" >&2
      failed+=("$pkg $target")
    fi
    rm -f "$log"
    ran=$((ran + 1))
  done
done

echo "fuzzed $ran targets in $((SECONDS - start))s, $fuzztime each"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'failing: %s\n' "${failed[@]}" >&2
  exit 1
fi
