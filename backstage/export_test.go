package backstage

// Limits, for tests that hit them.
const (
	MaxPages       = maxPages
	MaxEntities    = maxEntities
	MaxPageBytes   = maxPageBytes
	MaxRedirects   = maxRedirects
	RequestTimeout = apiRequestTimeout
)

// SetBeforeRead makes the file source call f with each path before opening it (f may block, to
// stand for a hung file system) and returns a function restoring the default.
func SetBeforeRead(f func(path string)) (restore func()) {
	old := beforeRead
	beforeRead = f
	return func() { beforeRead = old }
}

// EditDistance exposes the near-miss metric.
func EditDistance(a, b string, limit int) int { return editDistance(a, b, limit) }
