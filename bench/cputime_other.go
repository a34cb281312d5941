//go:build !unix

package main

import "time"

// processCPUTime is not measured here; the CPU figures read 0.
func processCPUTime() time.Duration { return 0 }
