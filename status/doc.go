// Package status serves the exporter's status page, /status: per organization its polls, API
// budget and backfill; per component its pipelines, their problems with the fix, and the last
// deployment per environment; the catalog's problems with file:line. ?format=json serves the
// same data with a versioned schema (see Page).
//
// The page answers "why is my component missing, or wrong?" without a log search, which is
// what the design's "No silent failure" asks of every surface. It renders from the immutable
// values a Source publishes and never calls the Buildkite API or the store, so a page view costs
// what the snapshot holds, never a request against the API budget.
package status
