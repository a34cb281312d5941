//go:build race

package buildkite

// raceEnabled: the race detector slows decoding ten-fold and inflates the heap, so the
// memory measurements skip and the large hostile pages shrink.
const raceEnabled = true
