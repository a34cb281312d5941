// Package webhook receives Buildkite's webhook notifications (POST /webhooks/buildkite) on a
// listener of their own, so that it can face Buildkite while /metrics stays private.
//
// A delivery is authenticated with the webhook token: X-Buildkite-Token equal to it (compared in
// constant time), or X-Buildkite-Signature "timestamp=<unix>,signature=<hex>", the HMAC-SHA256 of
// "<timestamp>.<body>" keyed with it, dispatched no more than five minutes before or after the
// receiver's clock and not seen before (reference §12). The body is read up to a limit and must be
// a JSON object of the documented shape. The build of a build.* event of a pipeline the catalog
// links is handed to a Sink without waiting (a bounded queue: when it is full the delivery is
// dropped and counted, and the next poll reads the build); everything else is answered and
// counted. The handler never waits on the store or the API, so it answers within Buildkite's
// short timeout whatever the poller is doing.
//
// Webhooks only accelerate: the collector applies the same classification and deduplication key
// as a poll, so a lost, late, duplicated or forged delivery never changes a count.
package webhook
