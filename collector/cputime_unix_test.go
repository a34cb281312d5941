//go:build unix

package collector

import (
	"syscall"
	"time"
)

// processCPUTime is the CPU time (user + system) the process has used: benchmarks report it
// next to wall time because the shared CI machine is often busy with other work.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
