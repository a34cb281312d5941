//go:build unix

// Package cputime reads the CPU time this process has used. Benchmarks report it next to wall
// time because the shared machines they run on are often busy with other work.
package cputime

import (
	"syscall"
	"time"
)

// Process returns the user and system CPU time of this process so far; 0 if it cannot be read.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
