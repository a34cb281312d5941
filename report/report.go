// Package report computes the deployment performance report: per component and environment,
// the DORA keys and the other deployment figures over a window of the deployment log, and the
// same over the period of the same length before it. It is pure computation over store.Record
// values (Builder) plus rendering (HTML, Markdown, JSON); the report command and the exporter's
// /api/v1/report feed it from the log.
//
// The numbers are the exporter's: every record goes through deployment.Aggregate.ApplyObserved
// (ApplyState outside the two periods, which keeps the same series state without counting), in
// the log's order and on top of the compacted base, so a count, a duration, a lead time, an
// approval wait and a recovery (failed → next passed, deployment/aggregate.go) are exactly what
// the exporter's counters and histograms observed. Only the percentiles differ from Grafana's:
// they come from the observed values themselves (nearest rank), where histogram_quantile
// interpolates inside a bucket.
package report

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// SchemaVersion is the version of the JSON document (README.md documents its keys). A key is
// never renamed or given another meaning within a version; new keys may be added.
const SchemaVersion = 1

// PercentileMethod names how percentiles are taken, in the report and its JSON.
const PercentileMethod = "nearest_rank"

// MaxWindow is the longest report window accepted: the log keeps --storage.retention (400 days
// by default) and the previous period doubles what is read.
const MaxWindow = 5 * 366 * 24 * time.Hour

// MemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit) the report command runs
// under unless GOMEMLIMIT is set. A report over 1,000,000 records of 10,000 components keeps
// about 65 MiB live (the per-series state and the periods' values) while decoding some 400 MB of
// records it drops at once; Go's default GC target of twice the live heap then gives about
// 150 MiB of resident memory, the exporter's own. The limit makes the GC run earlier instead
// (135 MiB; BENCHMARKS.md), and costs little: a report is short.
const MemoryLimit = 128 << 20

// maxBuckets is the most chart buckets a report has; longer windows get buckets of several days.
const maxBuckets = 92

// Entity is what the catalog says of a component.
type Entity struct {
	Owner  string
	System string
}

// Options select what a report covers.
type Options struct {
	// Since and Until bound the window [Since, Until); the previous period is the window of
	// the same length ending at Since.
	Since, Until time.Time
	// Component and Environment, when set, restrict the report to that component or
	// environment (exact match, as in the metrics' labels).
	Component, Environment string
	// Catalog gives the owner and system of components, by component label; nil without one.
	Catalog map[string]Entity
	// GroupByOwner adds per-owner totals (Report.Groups); it needs a catalog.
	GroupByOwner bool
	// GeneratedAt is the report's time stamp.
	GeneratedAt time.Time
}

// Validate checks the window.
func (o Options) Validate() error {
	switch {
	case o.Since.IsZero() || o.Until.IsZero():
		return errors.New("the report window needs a start and an end")
	case !o.Since.Before(o.Until):
		return fmt.Errorf("the report window is empty: it starts at %s and ends at %s", o.Since.UTC().Format(time.RFC3339), o.Until.UTC().Format(time.RFC3339))
	case o.Until.Sub(o.Since) > MaxWindow:
		return fmt.Errorf("the report window of %v is longer than the %v a report covers", o.Until.Sub(o.Since).Round(time.Hour), MaxWindow)
	case o.GroupByOwner && o.Catalog == nil:
		return errors.New("grouping by owner needs the catalog (--catalog.file or --catalog.backstage-url)")
	}
	return nil
}

// Report is a computed report; its JSON is the documented schema (README.md).
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	GeneratedAt   time.Time `json:"generated_at"`
	Since         time.Time `json:"since"`
	Until         time.Time `json:"until"`
	// PreviousSince is the start of the previous period, [PreviousSince, Since).
	PreviousSince    time.Time `json:"previous_since"`
	Filter           Filter    `json:"filter"`
	PercentileMethod string    `json:"percentile_method"`
	LevelsSource     string    `json:"dora_levels_source"`
	// RecordsRead is how many records of the log were read (all of it: recovery state comes
	// from before the window).
	RecordsRead int `json:"records_read"`
	// OldestRecord is the finish time of the oldest record still in the log; nil when empty.
	OldestRecord *time.Time `json:"oldest_record"`
	// CompactedRecords counts the records ever folded into totals (--storage.retention).
	CompactedRecords uint64   `json:"compacted_records"`
	Notes            []string `json:"notes"`
	// Totals pool every row of an environment: the one line a weekly review starts with.
	Totals []Total `json:"totals"`
	Rows   []Row   `json:"rows"`
	Groups []Group `json:"groups,omitempty"`
	Series Series  `json:"series"`
}

// Filter echoes the options that selected the rows.
type Filter struct {
	Component   string `json:"component"`
	Environment string `json:"environment"`
	GroupBy     string `json:"group_by"`
}

// Keys are the figures of one period.
type Keys struct {
	// Deployments counts finished deployments: passed, failed and canceled, as
	// buildkite_deployments_total does.
	Deployments int `json:"deployments"`
	Passed      int `json:"deployments_passed"`
	Failed      int `json:"deployments_failed"`
	Canceled    int `json:"deployments_canceled"`
	// FrequencyPerDay is (passed + failed) per day of the period, as the dashboard's DORA panel.
	FrequencyPerDay float64 `json:"deployment_frequency_per_day"`
	// ChangeFailureRate is failed / (passed + failed); nil without either.
	ChangeFailureRate *float64 `json:"change_failure_rate"`
	LeadTimeP50       *float64 `json:"lead_time_p50_seconds"`
	LeadTimeP90       *float64 `json:"lead_time_p90_seconds"`
	RecoveryP50       *float64 `json:"recovery_p50_seconds"`
	ApprovalWaitP50   *float64 `json:"approval_wait_p50_seconds"`
	DurationP50       *float64 `json:"duration_p50_seconds"`
	DurationP90       *float64 `json:"duration_p90_seconds"`
	// The number of values each percentile was taken over.
	LeadTimeSamples     int `json:"lead_time_samples"`
	RecoverySamples     int `json:"recovery_samples"`
	ApprovalWaitSamples int `json:"approval_wait_samples"`
	DurationSamples     int `json:"duration_samples"`
	// Complete is false when part of the period is older than the oldest record and records
	// were compacted: what finished then is missing.
	Complete bool `json:"complete"`
}

// Row is one (component, environment).
type Row struct {
	Component   string `json:"component"`
	Environment string `json:"environment"`
	Owner       string `json:"owner,omitempty"`
	System      string `json:"system,omitempty"`
	Current     Keys   `json:"current"`
	Previous    Keys   `json:"previous"`
	Levels      Levels `json:"dora_levels"`
	// Latest is the latest passed deployment of the period; absent without one.
	Latest *Latest `json:"latest_deployment,omitempty"`
}

// Latest is a row's latest passed deployment of the period. DeployedBy and ReleaseNotes are
// there only when the exporter keeps them (--deployments.keep-people-and-notes).
type Latest struct {
	FinishedAt   time.Time `json:"finished_at"`
	Pipeline     string    `json:"pipeline"`
	BuildNumber  int       `json:"build_number"`
	Version      string    `json:"version"`
	WebURL       string    `json:"web_url,omitempty"`
	DeployedBy   string    `json:"deployed_by,omitempty"`
	ReleaseNotes string    `json:"release_notes,omitempty"`
}

// httpURL is u when it is an absolute http(s) URL, else "": the log's URLs come from the API,
// and a javascript: link stays one when escaped.
func httpURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
		return ""
	}
	return u
}

// Group is the components of one owner in one environment, their values pooled (percentiles
// over all their deployments, not an average of theirs).
type Group struct {
	Owner       string `json:"owner"`
	Environment string `json:"environment"`
	Components  int    `json:"components"`
	Current     Keys   `json:"current"`
	Previous    Keys   `json:"previous"`
	Levels      Levels `json:"dora_levels"`
}

// Total is every selected component in one environment, their values pooled like a Group's.
type Total struct {
	Environment string `json:"environment"`
	Components  int    `json:"components"`
	Current     Keys   `json:"current"`
	Previous    Keys   `json:"previous"`
	Levels      Levels `json:"dora_levels"`
}

// Series is what the charts draw, over the window in buckets of BucketSeconds (a day, or several
// for long windows), all rows together.
type Series struct {
	BucketSeconds int64    `json:"bucket_seconds"`
	Buckets       []Bucket `json:"buckets"`
}

// Bucket is one chart step.
type Bucket struct {
	Start           time.Time `json:"start"`
	Passed          int       `json:"deployments_passed"`
	Failed          int       `json:"deployments_failed"`
	Canceled        int       `json:"deployments_canceled"`
	LeadTimeP50     *float64  `json:"lead_time_p50_seconds"`
	LeadTimeSamples int       `json:"lead_time_samples"`
}

// samples are the values one period observed, and its counts.
type samples struct {
	stateCounts
	leadTime, recovery, approvalWait, durat []float64
}

// stateCounts counts deployments by state.
type stateCounts struct{ passed, failed, canceled int }

func (c *stateCounts) count(state string) {
	switch state {
	case "passed":
		c.passed++
	case "failed":
		c.failed++
	case "canceled":
		c.canceled++
	}
}

func (s *samples) add(r store.Record, o deployment.Observation) {
	s.count(r.State)
	if o.HasLeadTime {
		s.leadTime = append(s.leadTime, o.LeadTime)
	}
	if o.HasRecovery {
		s.recovery = append(s.recovery, o.Recovery)
	}
	if o.HasApprovalWait {
		s.approvalWait = append(s.approvalWait, o.ApprovalWait)
	}
	if o.HasDuration {
		s.durat = append(s.durat, o.Duration)
	}
}

func (s *samples) merge(o *samples) {
	s.passed += o.passed
	s.failed += o.failed
	s.canceled += o.canceled
	s.leadTime = append(s.leadTime, o.leadTime...)
	s.recovery = append(s.recovery, o.recovery...)
	s.approvalWait = append(s.approvalWait, o.approvalWait...)
	s.durat = append(s.durat, o.durat...)
}

// keys computes the figures; it sorts the samples in place.
func (s *samples) keys(days float64, complete bool) Keys {
	k := Keys{
		Deployments: s.passed + s.failed + s.canceled,
		Passed:      s.passed, Failed: s.failed, Canceled: s.canceled,
		FrequencyPerDay:     float64(s.passed+s.failed) / days,
		LeadTimeSamples:     len(s.leadTime),
		RecoverySamples:     len(s.recovery),
		ApprovalWaitSamples: len(s.approvalWait),
		DurationSamples:     len(s.durat),
		Complete:            complete,
	}
	if n := s.passed + s.failed; n > 0 {
		k.ChangeFailureRate = ptr(float64(s.failed) / float64(n))
	}
	for _, v := range [][]float64{s.leadTime, s.recovery, s.approvalWait, s.durat} {
		slices.Sort(v)
	}
	k.LeadTimeP50, k.LeadTimeP90 = Percentile(s.leadTime, 0.5), Percentile(s.leadTime, 0.9)
	k.RecoveryP50 = Percentile(s.recovery, 0.5)
	k.ApprovalWaitP50 = Percentile(s.approvalWait, 0.5)
	k.DurationP50, k.DurationP90 = Percentile(s.durat, 0.5), Percentile(s.durat, 0.9)
	return k
}

func ptr(v float64) *float64 { return &v }

// Percentile is the nearest-rank percentile of sorted values: the smallest value that at least
// the fraction p of the values are less than or equal to (rank ⌈p·n⌉). It is always one of the
// values, never an interpolation; nil when there are none.
func Percentile(sorted []float64, p float64) *float64 {
	n := len(sorted)
	if n == 0 {
		return nil
	}
	rank := int(math.Ceil(p * float64(n)))
	rank = min(max(rank, 1), n)
	return ptr(sorted[rank-1])
}

type rowKey struct{ component, environment string }

type rowSamples struct {
	cur, prev samples
	latest    *Latest // the latest passed deployment of the current period
}

// bucketSamples is one chart bucket under construction.
type bucketSamples struct {
	stateCounts
	leadTime []float64
}

// Builder computes a report from records given in the log's order.
type Builder struct {
	opts       Options
	prevSince  time.Time
	agg        *deployment.Aggregate
	rows       map[rowKey]*rowSamples
	bucket     time.Duration
	buckets    []bucketSamples
	read       int
	oldest     time.Time
	compacted  uint64
	baseIgnore error // the compacted base could not be read
}

// NewBuilder starts a report over a log whose state (compacted base and count) is st.
func NewBuilder(st store.State, o Options) (*Builder, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	w := o.Until.Sub(o.Since)
	b := &Builder{opts: o, prevSince: o.Since.Add(-w), rows: map[rowKey]*rowSamples{}, compacted: st.Compacted}
	// The base carries each series' state across compaction: a failure compacted away still
	// starts the recovery its next pass ends, as in the exporter.
	agg, err := deployment.UnmarshalAggregate(st.Base)
	if err != nil {
		// Bucket bounds do not matter here; only the recovery state would. Say so, go on.
		b.baseIgnore = err
		agg = deployment.NewAggregate()
	}
	b.agg = agg
	days := math.Ceil(w.Hours() / 24 / maxBuckets)
	b.bucket = time.Duration(max(days, 1)) * 24 * time.Hour
	n := int((w + b.bucket - 1) / b.bucket)
	b.buckets = make([]bucketSamples, n)
	return b, nil
}

// Add applies one record, in the log's order.
func (b *Builder) Add(r store.Record) {
	b.read++
	if b.oldest.IsZero() || r.FinishedAt.Before(b.oldest) {
		b.oldest = r.FinishedAt
	}
	if (b.opts.Component != "" && r.Component != b.opts.Component) || (b.opts.Environment != "" && r.Environment != b.opts.Environment) {
		return // the series are independent: leaving others out changes nothing of these
	}
	t := r.FinishedAt
	if t.Before(b.prevSince) || !t.Before(b.opts.Until) {
		// Outside both periods: only the state a later recovery starts from matters.
		b.agg.ApplyState(r)
		return
	}
	o := b.agg.ApplyObserved(r)
	if !o.Counted {
		return
	}
	k := rowKey{r.Component, r.Environment}
	rs := b.rows[k]
	if rs == nil {
		rs = &rowSamples{}
		b.rows[k] = rs
	}
	if t.Before(b.opts.Since) {
		rs.prev.add(r, o)
		return
	}
	rs.cur.add(r, o)
	if r.State == "passed" && (rs.latest == nil || !r.FinishedAt.Before(rs.latest.FinishedAt)) {
		rs.latest = &Latest{FinishedAt: r.FinishedAt.UTC(), Pipeline: r.Pipeline, BuildNumber: r.BuildNumber, Version: r.Version,
			WebURL: httpURL(r.WebURL), DeployedBy: r.DeployedBy, ReleaseNotes: r.ReleaseNotes}
	}
	bs := &b.buckets[int(t.Sub(b.opts.Since)/b.bucket)]
	bs.count(r.State)
	if o.HasLeadTime {
		bs.leadTime = append(bs.leadTime, o.LeadTime)
	}
}

// complete says whether every record that finished in [from, …) is still in the log.
func (b *Builder) complete(from time.Time) bool {
	return b.compacted == 0 || (!b.oldest.IsZero() && !from.Before(b.oldest))
}

// Report returns the report. The builder must not be used afterwards.
func (b *Builder) Report() *Report {
	o := b.opts
	w := o.Until.Sub(o.Since)
	days := w.Hours() / 24
	r := &Report{
		SchemaVersion: SchemaVersion, GeneratedAt: o.GeneratedAt.UTC(),
		Since: o.Since.UTC(), Until: o.Until.UTC(), PreviousSince: b.prevSince.UTC(),
		Filter:           Filter{Component: o.Component, Environment: o.Environment},
		PercentileMethod: PercentileMethod, LevelsSource: LevelsSource,
		RecordsRead: b.read, CompactedRecords: b.compacted,
		Notes: []string{}, Totals: []Total{}, Rows: []Row{},
	}
	if o.GroupByOwner {
		r.Filter.GroupBy = "owner"
	}
	if !b.oldest.IsZero() {
		t := b.oldest.UTC()
		r.OldestRecord = &t
	}
	curComplete, prevComplete := b.complete(o.Since), b.complete(b.prevSince)
	oldest := "any record (the log holds none)"
	if r.OldestRecord != nil {
		oldest = r.OldestRecord.Format(time.RFC3339)
	}
	switch {
	case !curComplete:
		r.Notes = append(r.Notes, fmt.Sprintf("Records that finished before %s were compacted into totals (--storage.retention), which keep no dates: "+
			"this report's period reaches before that, so its counts and percentiles miss what finished earlier, and so do the previous period's.", oldest))
	case !prevComplete:
		r.Notes = append(r.Notes, fmt.Sprintf("Records that finished before %s were compacted into totals (--storage.retention), which keep no dates: "+
			"the previous period reaches before that, so the change against it compares with incomplete figures.", oldest))
	}
	if b.baseIgnore != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("The compacted totals could not be read (%v): a recovery whose failure was compacted is not counted.", b.baseIgnore))
	}

	keys := make([]rowKey, 0, len(b.rows))
	for k := range b.rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, c rowKey) int {
		return cmp.Or(cmp.Compare(a.component, c.component), cmp.Compare(a.environment, c.environment))
	})
	type groupKey struct{ owner, environment string }
	groups := map[groupKey]*rowSamples{}
	members := map[groupKey]int{}
	totals := map[string]*rowSamples{}
	envMembers := map[string]int{}
	var envs []string
	for _, k := range keys {
		rs := b.rows[k]
		e := o.Catalog[k.component]
		t := totals[k.environment]
		if t == nil {
			t = &rowSamples{}
			totals[k.environment] = t
			envs = append(envs, k.environment)
		}
		t.cur.merge(&rs.cur)
		t.prev.merge(&rs.prev)
		envMembers[k.environment]++
		if o.GroupByOwner {
			gk := groupKey{e.Owner, k.environment}
			g := groups[gk]
			if g == nil {
				g = &rowSamples{}
				groups[gk] = g
			}
			g.cur.merge(&rs.cur)
			g.prev.merge(&rs.prev)
			members[gk]++
		}
		row := Row{Component: k.component, Environment: k.environment, Owner: e.Owner, System: e.System,
			Current: rs.cur.keys(days, curComplete), Previous: rs.prev.keys(days, prevComplete), Latest: rs.latest}
		row.Levels = LevelsOf(row.Current)
		r.Rows = append(r.Rows, row)
		delete(b.rows, k) // its samples are no longer needed
	}
	slices.Sort(envs)
	r.Totals = []Total{}
	for _, env := range envs {
		t := Total{Environment: env, Components: envMembers[env],
			Current: totals[env].cur.keys(days, curComplete), Previous: totals[env].prev.keys(days, prevComplete)}
		t.Levels = LevelsOf(t.Current)
		r.Totals = append(r.Totals, t)
	}
	if o.GroupByOwner {
		gks := make([]groupKey, 0, len(groups))
		for k := range groups {
			gks = append(gks, k)
		}
		slices.SortFunc(gks, func(a, c groupKey) int {
			return cmp.Or(cmp.Compare(a.owner, c.owner), cmp.Compare(a.environment, c.environment))
		})
		r.Groups = []Group{}
		for _, k := range gks {
			g := Group{Owner: k.owner, Environment: k.environment, Components: members[k],
				Current: groups[k].cur.keys(days, curComplete), Previous: groups[k].prev.keys(days, prevComplete)}
			g.Levels = LevelsOf(g.Current)
			r.Groups = append(r.Groups, g)
		}
	}
	r.Series = Series{BucketSeconds: int64(b.bucket / time.Second), Buckets: make([]Bucket, len(b.buckets))}
	for i := range b.buckets {
		bs := &b.buckets[i]
		slices.Sort(bs.leadTime)
		r.Series.Buckets[i] = Bucket{Start: o.Since.Add(time.Duration(i) * b.bucket).UTC(),
			Passed: bs.passed, Failed: bs.failed, Canceled: bs.canceled,
			LeadTimeP50: Percentile(bs.leadTime, 0.5), LeadTimeSamples: len(bs.leadTime)}
	}
	return r
}

// Log is what Build reads: store.Log's read side.
type Log interface {
	Load() (store.State, error)
	Replay(fn func(store.Record) error) error
}

// Build reads the whole log (recoveries start before the window) and returns the report. ctx
// bounds the read: Build stops with ctx's error once it ends.
//
// The base and the records are read in separate steps, so that a running exporter keeps
// writing meanwhile; a compaction between them would fold records into a base this report did
// not read. Build then starts again, once.
func Build(ctx context.Context, l Log, o Options) (*Report, error) {
	for attempt := 0; ; attempt++ {
		st, err := l.Load()
		if err != nil {
			return nil, err
		}
		b, err := NewBuilder(st, o)
		if err != nil {
			return nil, err
		}
		n := 0
		err = l.Replay(func(r store.Record) error {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("report stopped after %d records: %w", n, err)
				}
			}
			b.Add(r)
			return nil
		})
		if err != nil {
			return nil, err
		}
		after, err := l.Load()
		if err != nil {
			return nil, err
		}
		if after.Compacted == st.Compacted {
			return b.Report(), nil
		}
		if attempt > 0 {
			return nil, errors.New("the deployment log was compacted twice while the report read it; try again")
		}
	}
}
