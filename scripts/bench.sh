#!/usr/bin/env bash
# make bench: reproduces every figure of BENCHMARKS.md in one run and prints them as a table.
#
#   ./scripts/bench.sh            the issue's scale; 30- and 90-day backfills at a tenth of it (about 20 minutes)
#   ./scripts/bench.sh --quick    a tenth of everything, three days of the month (about 3 minutes)
#
# Environment: SCALE (organization size for the steady state, 1 = the issue's), BACKFILL_SCALE
# (organization size for the backfills, default 0.1: at 1 they cost about an hour of CPU, see
# BENCHMARKS.md), COMPONENTS (render sizes, comma-separated), MEM_COMPONENTS, RECORDS and MEM_LIMIT
# (memory stage; MEM_LIMIT is the GOMEMLIMIT of its second run, default 180MiB), WEBHOOK_HOURS
# (fake hours per mode of the webhook economy, default 1), WEBHOOK_POSTS (deliveries of the webhook
# latency benchmark, default 200), MONTH_DAYS,
# MONTH_SCALE, MONTH_INTERVAL and MONTH_RETENTION (the simulated month: default 30 days of the
# issue's organization polled every 10 minutes, retention 1 day; at the default 30 s interval a
# month costs hours of CPU, see BENCHMARKS.md), STORE_SCALE, STORE_DAYS and STORE_BATCH
# (the store-size years, 400d and 30d retention: default the issue's organization, 365 days, an
# append per 30 minutes), BENCH_OUT (result directory, default bench/results).
set -euo pipefail
cd "$(dirname "$0")/.."

scale=${SCALE:-1}
backfill_scale=${BACKFILL_SCALE:-0.1}
components=${COMPONENTS:-1000,10000}
mem_components=${MEM_COMPONENTS:-10000}
records=${RECORDS:-1000000}
mem_limit=${MEM_LIMIT:-180MiB}
month_days=${MONTH_DAYS:-30}
month_scale=${MONTH_SCALE:-1}
month_interval=${MONTH_INTERVAL:-10m}
month_retention=${MONTH_RETENTION:-24h}
store_scale=${STORE_SCALE:-1}
store_days=${STORE_DAYS:-365}
store_batch=${STORE_BATCH:-30m}
if [ "${1:-}" = "--quick" ]; then
  scale=${SCALE:-0.1} backfill_scale=${BACKFILL_SCALE:-0.1} components=${COMPONENTS:-1000} mem_components=${MEM_COMPONENTS:-1000} records=${RECORDS:-100000}
  month_days=${MONTH_DAYS:-3} month_scale=${MONTH_SCALE:-0.1} month_interval=${MONTH_INTERVAL:-30s}
  store_scale=${STORE_SCALE:-0.1}
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--quick]" >&2
  exit 2
fi

out=${BENCH_OUT:-bench/results}
mkdir -p "$out"
figs="$out/figures.jsonl"
: >"$figs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "revision: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) ($(git status --porcelain 2>/dev/null | wc -l) paths uncommitted)"
  echo "scale: $scale (backfills: $backfill_scale); render components: $components; memory: $mem_components components, $records deployments (and GOMEMLIMIT=$mem_limit)"
  echo "month: $month_days days at scale $month_scale, poll interval $month_interval, retention $month_retention; store size: $store_days days at scale $store_scale, an append per $store_batch"
  echo "nproc: $(nproc)"
  free -h
  go version
  uptime
} >"$out/machine.txt"
cat "$out/machine.txt"

go build -o "$work/bench" ./bench
go test -c -o "$work/bench.test" ./bench

echo "== API economy: backfills, steady state, freshness, naive baseline (fake time)"
start=$SECONDS
"$work/bench.test" -test.run '^TestEconomy$' -test.v -test.timeout 90m \
  -scale="$scale" -backfill-scale="$backfill_scale" -out="$figs" 2>&1 | tee "$out/economy.log"
echo "   ($((SECONDS - start)) s)"

echo "== /metrics render: $components components × 3 environments"
start=$SECONDS
"$work/bench" render -components "$components" -out "$figs" 2>&1 | tee "$out/render.log"
echo "   ($((SECONDS - start)) s)"

echo "== exposition and deployment package benchmarks (1,000 components), for comparison"
{
  go test -run '^$' -bench '^Benchmark(Encode|Warm|Scrape|Held)$/^components=1000$' -benchmem -benchtime 5x ./exposition &&
    go test -run '^$' -bench '^BenchmarkSnapshot$' -benchmem -benchtime 5x ./deployment
} 2>&1 | tee "$out/package-bench.txt" ||
  echo "   (the package benchmarks failed; they are a cross-check, the figures above do not depend on them)"

echo "== webhooks: API requests per hour, 30 s poll vs webhooks + 5 m poll (fake time), then latency and throughput at 1,000 components"
start=$SECONDS
"$work/bench.test" -test.run '^TestEconomyWebhooks$' -test.v -test.timeout 90m \
  -scale="$scale" -webhook-hours="${WEBHOOK_HOURS:-1}" -out="$figs" 2>&1 | tee "$out/webhooks.log"
"$work/bench.test" -test.run '^$' -test.bench '^BenchmarkWebhookLatency$' -test.benchtime "${WEBHOOK_POSTS:-200}x" 2>&1 | tee -a "$out/webhooks.log"
"$work/bench.test" -test.run '^$' -test.bench '^BenchmarkWebhookThroughput$' -test.benchtime 5s 2>&1 | tee -a "$out/webhooks.log"
echo "   ($((SECONDS - start)) s)"

echo "== memory and replay: $mem_components components, $records deployments in bbolt"
start=$SECONDS
"$work/bench" mkstore -dir "$work/store" -components "$mem_components" -records "$records"
"$work/bench" memory -dir "$work/store" -components "$mem_components" -out "$figs" 2>&1 | tee "$out/memory.log"
echo "   again with GOMEMLIMIT=$mem_limit (Go's soft memory limit; the exporter does not set one)"
GOMEMLIMIT=$mem_limit "$work/bench" memory -dir "$work/store" -components "$mem_components" -out "$figs" 2>&1 | tee -a "$out/memory.log"
echo "   ($((SECONDS - start)) s)"

echo "== report command over the same log: the last 7 days of $records deployments"
start=$SECONDS
"$work/bench" deployreport -dir "$work/store" -out "$figs" 2>&1 | tee "$out/report.log"
echo "   ($((SECONDS - start)) s)"

# The store-size years only write files: they run beside the month, one process per retention,
# and their figures are appended after the month's.
echo "== store size: $store_days days at scale $store_scale (about $(awk "BEGIN { printf \"%.0f\", 2000 * $store_scale }") deployments a day), retention 400d and 30d, beside the month"
store_start=$SECONDS
for r in 400d 30d; do
  "$work/bench" storesize -dir "$work/year-$r" -scale "$store_scale" -days "$store_days" -batch "$store_batch" -retention "$r" \
    -out "$work/storesize-$r.jsonl" >"$work/storesize-$r.log" 2>&1 &
done

echo "== a simulated month: $month_days days at scale $month_scale, polled every $month_interval (fake time)"
start=$SECONDS
"$work/bench.test" -test.run '^TestMonth$' -test.v -test.timeout 3h \
  -month-days="$month_days" -month-scale="$month_scale" -month-interval="$month_interval" -month-retention="$month_retention" \
  -out="$figs" 2>&1 | tee "$out/month.log"
echo "   ($((SECONDS - start)) s)"

echo "== store size (waiting for both years)"
wait
cat "$work/storesize-400d.log" "$work/storesize-30d.log" | tee "$out/storesize.log"
cat "$work/storesize-400d.jsonl" "$work/storesize-30d.jsonl" >>"$figs"
echo "   ($((SECONDS - store_start)) s since both started)"

echo "== figures (also in $out/figures.md)"
"$work/bench" report -in "$figs" -md "$out/figures.md"
