package collector

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

// refreshed ends every HELP string: the values come from the last poll, not from the scrape.
const refreshed = " Refreshed every poll interval."

func deployDesc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(name, help+refreshed, labels, nil)
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	familyInfos[d] = &familyInfo{name: name, help: help + refreshed, labels: labels, order: order}
	return d
}

// familyInfo is what the text encoder needs of a desc, which prometheus.Desc does not expose.
type familyInfo struct {
	name, help string
	labels     []string // in the desc's order, the order buildSnapshot passes values in
	order      []int    // indexes of labels sorted by name, the order const metrics hold them in
}

// familyInfos describes every desc deployDesc made.
var familyInfos = map[*prometheus.Desc]*familyInfo{}

var (
	descDeployments = deployDesc("buildkite_deployments_total",
		"Finished deployments by state (passed, failed, canceled).", "component", "environment", "pipeline", "state")
	descDuration = deployDesc("buildkite_deployment_duration_seconds",
		"Time from a passed or failed deployment's start to its finish.", "component", "environment", "state")
	descLeadTime = deployDesc("buildkite_deployment_lead_time_seconds",
		"Time from a commit's first build in the component's pipelines to its passed deployment.", "component", "environment")
	descRecovery = deployDesc("buildkite_deployment_recovery_seconds",
		"Time from a failed deployment to the next passed deployment of the environment.", "component", "environment")
	descApprovalWait = deployDesc("buildkite_deployment_approval_wait_seconds",
		"Time deployments waited on block steps (job runnable_at to unblocked_at).", "component", "environment")
	descLastFinished = deployDesc("buildkite_deployment_last_finished_timestamp_seconds",
		"When the latest deployment in this state finished.", "component", "environment", "state")
	descFailing = deployDesc("buildkite_deployment_failing",
		"1 while the latest finished, non-canceled deployment of the environment failed.", "component", "environment")
	descInfo = deployDesc("buildkite_deployment_info",
		"What is deployed now: version and commit of the latest passed deployment.", "component", "environment", "version", "commit")
	descRunning = deployDesc("buildkite_deployments_running",
		"Deployments scheduled, running, failing or canceling.", "component", "environment")
	descRunningSince = deployDesc("buildkite_deployment_running_since_timestamp_seconds",
		"Start of the oldest deployment still running; absent when none runs.", "component", "environment")
	descAwaiting = deployDesc("buildkite_deployments_awaiting_approval",
		"Deployments waiting on a block step, not older than awaiting_approval_max_age.", "component", "environment")
	descAwaitingSince = deployDesc("buildkite_deployment_awaiting_approval_since_timestamp_seconds",
		"When the oldest deployment awaiting approval blocked; absent when none waits.", "component", "environment")
	descSLOObjective = deployDesc("buildkite_deployment_slo_objective_ratio",
		"The SLO objective that applies to the environment, from the configuration.", "component", "environment", "slo")

	descUp = deployDesc("buildkite_up",
		"1 when the last poll of every organization succeeded.")
	descLastPoll = deployDesc("buildkite_exporter_last_successful_poll_timestamp_seconds",
		"When the last successful poll of the organization finished.", "organization")
	descPollDuration = deployDesc("buildkite_exporter_poll_duration_seconds",
		"How long the last poll of the organization took.", "organization")
	descPollErrors = deployDesc("buildkite_exporter_poll_errors_total",
		"Polls of the organization that failed.", "organization")
	descStorageErrors = deployDesc("buildkite_exporter_storage_errors_total",
		"Failed writes to the deployment log; the poll is retried next cycle.")
	descUnknownEnvs = deployDesc("buildkite_exporter_unknown_environments",
		"Environment names in use that the alias table does not know; the log names them.")

	allDescs = []*prometheus.Desc{descDeployments, descDuration, descLeadTime, descRecovery, descApprovalWait,
		descLastFinished, descFailing, descInfo, descRunning, descRunningSince, descAwaiting, descAwaitingSince,
		descSLOObjective, descUp, descLastPoll, descPollDuration, descPollErrors, descStorageErrors, descUnknownEnvs}
)

// liveEnv is what the latest poll saw of builds that have not finished, per (component, environment).
type liveEnv struct {
	Running       int
	RunningSince  time.Time
	Awaiting      int
	AwaitingSince time.Time
}

// orgHealth is the poll status of one organization.
type orgHealth struct {
	Polled       bool // at least one poll attempt finished
	LastOK       bool
	LastSuccess  time.Time
	LastDuration time.Duration
	Errors       uint64
}

// snapshotInput is everything a snapshot is rendered from; the caller holds the locks.
type snapshotInput struct {
	cfg           *config.Config
	catalog       []backstage.Component
	agg           *aggregate
	live          map[string]liveEnv // by envKey
	orgs          map[string]orgHealth
	storageErrors uint64
	// started is set once a first poll cycle ended; buildkite_up is 0 before.
	started bool
	// encodedOnly renders the gzipped text exposition directly into the snapshot's encoded
	// form, without const metrics: the snapshot then has no metrics for Collect.
	encodedOnly bool
}

// snapshot is an immutable, pre-rendered set of const metrics: Collect only sends them. A
// snapshot built with snapshotInput.encodedOnly has no metrics, only its encoded exposition.
type snapshot struct {
	metrics []prometheus.Metric
	// unknownEnvs are the environment names not in the alias table, for logging.
	unknownEnvs []string
	enc         encoded
}

func constHist(d *prometheus.Desc, h *histogram, bounds []float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, h.cumulative(bounds), validLabels(labels)...)
}

// validLabels replaces invalid UTF-8, which would make the Must constructors panic; values
// from the catalog, the API or an old log are not trusted to be valid.
func validLabels(l []string) []string {
	for i, v := range l {
		if !utf8.ValidString(v) {
			l[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	return l
}

// buildSnapshot renders the deployment series of the components in the catalog. Components no
// longer in the catalog stop being exported; their history stays in the log and comes back with
// them. Counters exist for every known (component, environment, pipeline): seen in a record, or,
// for a catalog pipeline without any record yet, the environment its slug names or the default.
func buildSnapshot(in snapshotInput) *snapshot {
	s := &snapshot{}
	var em emitter
	var text *textEmitter
	var consts *constEmitter
	if in.encodedOnly {
		text = newTextEmitter()
		em = text
	} else {
		consts = &constEmitter{}
		em = consts
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) { em.sample(d, prometheus.GaugeValue, v, l...) }
	counter := func(d *prometheus.Desc, v float64, l ...string) { em.sample(d, prometheus.CounterValue, v, l...) }
	cls := classifier{in.cfg}
	a := in.agg
	// envs: per component, environment → pipelines.
	type compEnvs = map[string]map[string]bool
	known := map[string]compEnvs{}
	owners := map[string]string{}
	add := func(c, env, p string) {
		if known[c] == nil {
			known[c] = compEnvs{}
		}
		if known[c][env] == nil {
			known[c][env] = map[string]bool{}
		}
		if p != "" {
			known[c][env][p] = true
		}
	}
	for _, comp := range in.catalog {
		owners[comp.Label] = comp.Owner
		add(comp.Label, "", "")
		delete(known[comp.Label], "")
	}
	withRecords := map[string]bool{} // component\x00pipeline
	for k := range a.Pipelines {
		parts := strings.Split(k, "\x00")
		if _, ok := owners[parts[0]]; !ok {
			continue
		}
		add(parts[0], parts[1], parts[2])
		withRecords[joinKey(parts[0], parts[2])] = true
	}
	for _, comp := range in.catalog {
		for _, p := range comp.Pipelines {
			if withRecords[joinKey(comp.Label, p.String())] {
				continue
			}
			env := cls.slugEnvironment(p.Pipeline)
			if env == "" {
				env = in.cfg.DefaultEnvironment
			}
			add(comp.Label, in.cfg.NormalizeEnvironment(env), p.String())
		}
	}
	unknown := map[string]bool{}
	for _, c := range sortedKeys(known) {
		for _, env := range sortedKeys(known[c]) {
			if !in.cfg.KnownEnvironment(env) {
				unknown[env] = true
			}
			ek := envKey(c, env)
			for _, p := range sortedKeys(known[c][env]) {
				for _, st := range deploymentStates {
					counter(descDeployments, float64(a.Deployments[joinKey(c, env, p, st)]), c, env, p, st)
				}
			}
			for _, st := range deploymentStates {
				sk := joinKey(c, env, st)
				if h := a.Duration[sk]; h != nil {
					em.histogram(descDuration, h, config.DurationBuckets, c, env, st)
				}
				if t := a.LastFinished[sk]; !t.IsZero() {
					gauge(descLastFinished, unixSeconds(t), c, env, st)
				}
			}
			if h := a.LeadTime[ek]; h != nil {
				em.histogram(descLeadTime, h, leadTimeBuckets, c, env)
			}
			if h := a.Recovery[ek]; h != nil {
				em.histogram(descRecovery, h, recoveryBuckets, c, env)
			}
			if h := a.ApprovalWait[ek]; h != nil {
				em.histogram(descApprovalWait, h, approvalWaitBuckets, c, env)
			}
			es := a.Envs[ek]
			failing := 0.0
			if es != nil && es.Failing {
				failing = 1
			}
			gauge(descFailing, failing, c, env)
			if es != nil && !es.DeployedAt.IsZero() {
				gauge(descInfo, 1, c, env, es.DeployedVersion, es.DeployedCommit)
			}
			live := in.live[ek]
			gauge(descRunning, float64(live.Running), c, env)
			if live.Running > 0 {
				gauge(descRunningSince, unixSeconds(live.RunningSince), c, env)
			}
			gauge(descAwaiting, float64(live.Awaiting), c, env)
			if live.Awaiting > 0 {
				gauge(descAwaitingSince, unixSeconds(live.AwaitingSince), c, env)
			}
			obj := in.cfg.ObjectivesFor(c, owners[c], env)
			for _, slo := range []string{config.SLOSuccess, config.SLODuration} {
				if v, ok := obj[slo]; ok {
					gauge(descSLOObjective, v, c, env, slo)
				}
			}
		}
	}
	up := 0.0
	if in.started {
		up = 1
	}
	for _, org := range sortedKeys(in.orgs) {
		h := in.orgs[org]
		if !h.LastOK {
			up = 0
		}
		if !h.LastSuccess.IsZero() {
			gauge(descLastPoll, unixSeconds(h.LastSuccess), org)
		}
		if h.Polled {
			gauge(descPollDuration, h.LastDuration.Seconds(), org)
		}
		counter(descPollErrors, float64(h.Errors), org)
	}
	gauge(descUp, up)
	counter(descStorageErrors, float64(in.storageErrors))
	s.unknownEnvs = sortedKeys(unknown)
	gauge(descUnknownEnvs, float64(len(unknown)))
	if text != nil {
		gz, err := text.finish()
		s.enc.once.Do(func() { s.enc.gz, s.enc.encodeErr = gz, err })
	} else {
		s.metrics = consts.metrics
	}
	return s
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
