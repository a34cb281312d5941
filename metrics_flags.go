package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
)

// metricsFlags are the flags that change what the /metrics bodies carry.
type metricsFlags struct {
	nativeHistograms  bool
	createdTimestamps bool
}

func (m *metricsFlags) register(app *kingpin.Application) {
	app.Flag("metrics.native-histograms", "Also expose the deployment histograms as native (exponential) histograms, in protobuf only; the classic buckets stay. A Prometheus that ingests native histograms drops the classic buckets unless told to keep them (README: Native histograms).").
		BoolVar(&m.nativeHistograms)
	app.Flag("metrics.created-timestamps", "Write OpenMetrics _created lines (the finished_at of each series' first deployment). Protobuf always carries created timestamps; a Prometheus before 2.50 stores _created lines as extra series.").
		BoolVar(&m.createdTimestamps)
}

// bodyOptions are the bodies' options the flags ask for.
func (m *metricsFlags) bodyOptions() exposition.BodyOptions {
	return exposition.BodyOptions{NativeHistograms: m.nativeHistograms, CreatedLines: m.createdTimestamps}
}
