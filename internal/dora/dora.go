// Package dora holds the DORA performance-level bands that the Grafana component dashboard and
// the report both classify with, so that the two can never disagree.
//
// The bands are those of the 2023 Accelerate State of DevOps Report (dora.dev), which the 2024
// report kept for frequency, lead time and recovery time; its change failure bands are used
// because the 2024 ones are not ordered (high 20 %, medium 10 %). "On demand" deployment is taken
// as at least one a day.
package dora

const (
	Hour  = 3600.0
	Day   = 24 * Hour
	Week  = 7 * Day
	Month = 30 * Day
)

// The three boundaries between the four levels (elite, high, medium, low) of each key, in the
// key's own unit and order.
var (
	FrequencyBands = [3]float64{1, 1.0 / 7, 1.0 / 30} // deployments per day, higher is better
	LeadTimeBands  = [3]float64{Day, Week, Month}     // seconds, lower is better
	FailureBands   = [3]float64{0.05, 0.10, 0.15}     // failed / (passed + failed), lower is better
	RecoveryBands  = [3]float64{Hour, Day, Week}      // seconds, lower is better
)
