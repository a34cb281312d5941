package report

import "github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/dora"

// Level is a DORA performance level.
type Level string

// The levels, best first; LevelNone when the key has no value (no deployment, no lead time).
const (
	LevelElite  Level = "elite"
	LevelHigh   Level = "high"
	LevelMedium Level = "medium"
	LevelLow    Level = "low"
	LevelNone   Level = "none"
)

// LevelsSource names where the bands come from, in every report.
const LevelsSource = "2023 Accelerate State of DevOps Report (DORA, dora.dev), performance levels table: " +
	"deployment frequency elite ≥ 1/day (on demand), high ≥ 1/week, medium ≥ 1/month; " +
	"lead time for changes elite ≤ 1 day, high ≤ 1 week, medium ≤ 1 month; " +
	"change failure rate elite ≤ 5 %, high ≤ 10 %, medium ≤ 15 %; " +
	"failed deployment recovery time elite ≤ 1 hour, high ≤ 1 day, medium ≤ 1 week; anything worse is low. " +
	"The same bands as the Grafana component dashboard's DORA panels."

// Levels are the DORA level of each key of a period.
type Levels struct {
	DeploymentFrequency Level `json:"deployment_frequency"`
	LeadTime            Level `json:"lead_time"`
	ChangeFailureRate   Level `json:"change_failure_rate"`
	RecoveryTime        Level `json:"recovery_time"`
}

// Units of the bands and of the charts' axes.
const (
	hour  = dora.Hour
	day   = dora.Day
	week  = dora.Week
	month = dora.Month
)

// The bands are internal/dora's, which the Grafana component dashboard classifies with too.
var (
	frequencyBands = dora.FrequencyBands
	leadTimeBands  = dora.LeadTimeBands
	failureBands   = dora.FailureBands
	recoveryBands  = dora.RecoveryBands
)

var levelOrder = [4]Level{LevelElite, LevelHigh, LevelMedium, LevelLow}

// lowerIsBetter: Elite ≤ b0 < High ≤ b1 < Medium ≤ b2 < Low.
func lowerIsBetter(v *float64, b [3]float64) Level {
	if v == nil {
		return LevelNone
	}
	for i, bound := range b {
		if *v <= bound {
			return levelOrder[i]
		}
	}
	return LevelLow
}

// higherIsBetter: Elite ≥ b0 > High ≥ b1 > Medium ≥ b2 > Low.
func higherIsBetter(v float64, b [3]float64) Level {
	for i, bound := range b {
		if v >= bound {
			return levelOrder[i]
		}
	}
	return LevelLow
}

// LevelsOf classifies a period's keys.
func LevelsOf(k Keys) Levels {
	return Levels{
		DeploymentFrequency: higherIsBetter(k.FrequencyPerDay, frequencyBands),
		LeadTime:            lowerIsBetter(k.LeadTimeP50, leadTimeBands),
		ChangeFailureRate:   lowerIsBetter(k.ChangeFailureRate, failureBands),
		RecoveryTime:        lowerIsBetter(k.RecoveryP50, recoveryBands),
	}
}
