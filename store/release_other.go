//go:build !linux

package store

// dropMapped is a no-op where madvise is not used; the kernel reclaims the clean pages itself
// under memory pressure.
func dropMapped(uintptr, int) {}
