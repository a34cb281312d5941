// Package exposition turns a snapshot.Snapshot into the /metrics exposition: the deployment
// families, rendered through client_model's dto types and encoded with prometheus/common's expfmt
// encoders in the format the scraper negotiated (protobuf delimited, OpenMetrics 1.0.0 or 0.0.1,
// classic text 0.0.4).
//
// A snapshot changes once per poll but is scraped many times, and at 1,000 components it is
// ~150,000 series: so each body is encoded once per (snapshot, format), gzipped, and only the
// compressed bytes are kept (Bodies). Encoding goes family by family, a chunk of series at a time,
// so that no dto of every series is ever held at once.
//
// The exporter's own health (buildkite_up, poll and storage errors) is not in the snapshot: it
// lives on the exporter's registry, which NewHandler gathers at every scrape and serves before
// the cached deployment body.
package exposition
