//go:build !race

package buildkite

const raceEnabled = false
