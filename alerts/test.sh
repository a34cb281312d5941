#!/bin/sh
# Checks and unit-tests the bundled rules with Debian's promtool 2.42 and a current promtool 3.x
# (built from tools/go.mod), and checks the example Alertmanager configuration with amtool.
# Fails loudly when a tool is missing: a skipped check would look like a passed one.
#   PROMTOOL2  promtool 2.x   (default: promtool on PATH, Debian package prometheus)
#   PROMTOOL3  promtool 3.x   (default: go tool -modfile=tools/go.mod promtool)
#   AMTOOL     amtool          (default: amtool on PATH, Debian package prometheus-alertmanager)
set -eu
cd "$(dirname "$0")/.."

PROMTOOL2=${PROMTOOL2:-promtool}
PROMTOOL3=${PROMTOOL3:-"${GO:-go} tool -modfile=tools/go.mod promtool"}
AMTOOL=${AMTOOL:-amtool}

die() { echo "alerts/test.sh: $*" >&2; exit 1; }

command -v "$PROMTOOL2" >/dev/null 2>&1 ||
	die "promtool 2.x not found ($PROMTOOL2); install Debian's prometheus package or set PROMTOOL2"
command -v "$AMTOOL" >/dev/null 2>&1 ||
	die "amtool not found ($AMTOOL); install Debian's prometheus-alertmanager package or set AMTOOL"
v2=$("$PROMTOOL2" --version 2>&1 | head -n1)
case "$v2" in *"version 2."*) ;; *) die "$PROMTOOL2 is not promtool 2.x: $v2" ;; esac
# shellcheck disable=SC2086 # PROMTOOL3 is a command line.
$PROMTOOL3 --version >/dev/null 2>&1 ||
	die "promtool 3.x unavailable ($PROMTOOL3); run: go -C tools mod download, or set PROMTOOL3"

rules=alerts/buildkite-deployments.rules.yml
tests=$(ls alerts/tests/*.test.yml)

echo "== $v2"
"$PROMTOOL2" check rules "$rules"
# shellcheck disable=SC2086
"$PROMTOOL2" test rules $tests
echo "== promtool 3.x ($PROMTOOL3)"
# shellcheck disable=SC2086
$PROMTOOL3 check rules "$rules"
# shellcheck disable=SC2086
$PROMTOOL3 test rules $tests
echo "== $("$AMTOOL" --version 2>&1 | head -n1)"
"$AMTOOL" check-config alerts/alertmanager.yml
echo "alerts/test.sh: all rule and Alertmanager checks passed"
