package store

import "syscall"

// dropMapped tells the kernel this process no longer needs the pages of the mapping
// [data, data+size). bbolt maps the file read-only and shared, so the pages are clean and
// file-backed: they leave the process's resident set, stay in the page cache, and a later read
// faults them back in from there. Errors are ignored: this only frees memory sooner.
func dropMapped(data uintptr, size int) {
	if data == 0 || size <= 0 {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(size), syscall.MADV_DONTNEED)
}
