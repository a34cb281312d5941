package report

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

var epoch = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

// randomLog makes n records of a few components and environments over 60 days, in append
// order: mostly by finish time, with late arrivals (a record appended after later ones, as the
// poll overlap and retried builds make), and every optional value sometimes missing.
func randomLog(rng *rand.Rand, n int) []store.Record {
	comps := []string{"api", "web", "team-a/worker", "billing"}
	envs := []string{"production", "staging"}
	states := []string{"passed", "passed", "passed", "failed", "failed", "canceled"}
	out := make([]store.Record, 0, n)
	t := epoch
	for i := range n {
		t = t.Add(time.Duration(rng.Int64N(int64(6 * time.Hour))))
		fin := t
		if rng.IntN(10) == 0 {
			fin = t.Add(-time.Duration(rng.Int64N(int64(3 * 24 * time.Hour)))) // a late arrival
		}
		r := store.Record{
			Key:       fmt.Sprintf("b%d@%s#x", i, fin.Format(time.RFC3339Nano)),
			Component: comps[rng.IntN(len(comps))], Environment: envs[rng.IntN(len(envs))],
			Pipeline: "acme/deploy", State: states[rng.IntN(len(states))], BuildID: fmt.Sprint("b", i), BuildNumber: i + 1,
			CreatedAt: fin.Add(-time.Hour), FinishedAt: fin,
			LeadTimeSeconds: -1, ApprovalWaitSeconds: -1,
		}
		if rng.IntN(5) > 0 {
			r.StartedAt = fin.Add(-time.Duration(rng.Int64N(int64(40 * time.Minute))))
		}
		if rng.IntN(7) == 0 {
			r.StartedAt = fin.Add(time.Minute) // a clock skew: no duration
		}
		if r.State == "passed" && rng.IntN(4) > 0 {
			r.LeadTimeSeconds = float64(rng.IntN(20 * 86400))
		}
		if rng.IntN(3) == 0 {
			r.ApprovalWaitSeconds = float64(rng.IntN(7200))
		}
		out = append(out, r)
	}
	return out
}

// direct is the report's figures counted straight from the records, without the deployment
// package: its own recovery rule (a failure starts a recovery unless one is open, the next pass
// ends it; records finishing before the latest non-canceled one of their series only count) and
// its own percentile (the smallest value at least a share p of the values do not exceed).
type direct struct {
	passed, failed, canceled           int
	lead, recovery, approval, duration []float64
}

func percentileByCount(vs []float64, p float64) *float64 {
	if len(vs) == 0 {
		return nil
	}
	s := slices.Clone(vs)
	sort.Float64s(s)
	for _, v := range s {
		le := 0
		for _, w := range s {
			if w <= v {
				le++
			}
		}
		if float64(le) >= p*float64(len(s)) {
			return &v
		}
	}
	return &s[len(s)-1]
}

func directCount(all []store.Record, from, until time.Time) map[rowKey]*direct {
	type series struct {
		latest, failedSince time.Time
	}
	state := map[rowKey]*series{}
	out := map[rowKey]*direct{}
	for _, r := range all {
		k := rowKey{r.Component, r.Environment}
		s := state[k]
		if s == nil {
			s = &series{}
			state[k] = s
		}
		in := !r.FinishedAt.Before(from) && r.FinishedAt.Before(until)
		d := out[k]
		if in && d == nil {
			d = &direct{}
			out[k] = d
		}
		var recovery float64
		recovered := false
		switch r.State {
		case "passed":
			if !r.FinishedAt.Before(s.latest) {
				if !s.failedSince.IsZero() {
					recovery, recovered = r.FinishedAt.Sub(s.failedSince).Seconds(), true
				}
				s.latest, s.failedSince = r.FinishedAt, time.Time{}
			}
		case "failed":
			if !r.FinishedAt.Before(s.latest) {
				s.latest = r.FinishedAt
				if s.failedSince.IsZero() {
					s.failedSince = r.FinishedAt
				}
			}
		}
		if !in {
			continue
		}
		switch r.State {
		case "passed":
			d.passed++
			if r.LeadTimeSeconds >= 0 {
				d.lead = append(d.lead, r.LeadTimeSeconds)
			}
		case "failed":
			d.failed++
		case "canceled":
			d.canceled++
		}
		if recovered {
			d.recovery = append(d.recovery, recovery)
		}
		if r.ApprovalWaitSeconds >= 0 {
			d.approval = append(d.approval, r.ApprovalWaitSeconds)
		}
		if r.State != "canceled" && !r.StartedAt.IsZero() && !r.FinishedAt.Before(r.StartedAt) {
			d.duration = append(d.duration, r.FinishedAt.Sub(r.StartedAt).Seconds())
		}
	}
	return out
}

func (d *direct) keys(days float64) Keys {
	k := Keys{
		Deployments: d.passed + d.failed + d.canceled, Passed: d.passed, Failed: d.failed, Canceled: d.canceled,
		FrequencyPerDay: float64(d.passed+d.failed) / days,
		LeadTimeP50:     percentileByCount(d.lead, 0.5), LeadTimeP90: percentileByCount(d.lead, 0.9),
		RecoveryP50: percentileByCount(d.recovery, 0.5), ApprovalWaitP50: percentileByCount(d.approval, 0.5),
		DurationP50: percentileByCount(d.duration, 0.5), DurationP90: percentileByCount(d.duration, 0.9),
		LeadTimeSamples: len(d.lead), RecoverySamples: len(d.recovery), ApprovalWaitSamples: len(d.approval), DurationSamples: len(d.duration),
		Complete: true,
	}
	if n := d.passed + d.failed; n > 0 {
		r := float64(d.failed) / float64(n)
		k.ChangeFailureRate = &r
	}
	return k
}

func memoryLog(t testing.TB, recs []store.Record) *store.Memory {
	t.Helper()
	m := store.NewMemory()
	for i := 0; i < len(recs); i += 50 {
		if _, err := m.Append(store.Batch{Records: recs[i:min(len(recs), i+50)]}); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestExactRandom: over random logs, random windows and a random compaction, every figure of
// every row equals the direct count over the log, and a window over everything counts what the
// exporter's own fold (deployment.Aggregate) counts.
func TestExactRandom(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 18))
			all := randomLog(rng, 100+rng.IntN(400))
			log := memoryLog(t, all)
			cutoff := time.Time{}
			if seed%3 == 0 {
				// Compact the first fortnight, as --storage.retention would.
				cutoff = epoch.Add(14 * 24 * time.Hour)
				if err := log.Compact(cutoff, deployment.Fold); err != nil {
					t.Fatal(err)
				}
				// Compaction folds the records that finished before the cutoff first, then the
				// rest follow: that is the order an exporter restarted on this log applies them
				// in, and a late arrival across the cutoff can end another recovery than it did
				// in the running exporter. The direct count takes the same order.
				var before, after []store.Record
				for _, r := range all {
					if r.FinishedAt.Before(cutoff) {
						before = append(before, r)
					} else {
						after = append(after, r)
					}
				}
				all = append(before, after...)
			}
			var end time.Time
			for _, r := range all {
				if r.FinishedAt.After(end) {
					end = r.FinishedAt
				}
			}
			for range 5 {
				w := time.Duration(1+rng.IntN(20)) * 24 * time.Hour
				since := epoch.Add(time.Duration(rng.Int64N(int64(end.Sub(epoch)))))
				if !cutoff.IsZero() && since.Add(-w).Before(cutoff.Add(3*24*time.Hour)) {
					since = cutoff.Add(3*24*time.Hour + w) // both periods after the compacted records
				}
				o := Options{Since: since, Until: since.Add(w)}
				if rng.IntN(3) == 0 {
					o.Environment = "production"
				}
				rep, err := Build(context.Background(), log, o)
				if err != nil {
					t.Fatal(err)
				}
				days := w.Hours() / 24
				cur, prev := directCount(all, o.Since, o.Until), directCount(all, o.Since.Add(-w), o.Since)
				want := map[rowKey][2]Keys{}
				for k, d := range cur {
					v := want[k]
					v[0] = d.keys(days)
					want[k] = v
				}
				for k, d := range prev {
					v := want[k]
					v[1] = d.keys(days)
					want[k] = v
				}
				got := map[rowKey][2]Keys{}
				for _, row := range rep.Rows {
					got[rowKey{row.Component, row.Environment}] = [2]Keys{row.Current, row.Previous}
				}
				for k, v := range want {
					if o.Environment != "" && k.environment != o.Environment {
						delete(want, k)
						continue
					}
					for i := range v {
						if v[i].Deployments == 0 && v[i].FrequencyPerDay == 0 {
							v[i] = (&direct{}).keys(days) // a row present for the other period only
						}
					}
					want[k] = v
				}
				if diff := cmp.Diff(want, got, cmp.AllowUnexported(rowKey{})); diff != "" {
					t.Errorf("window %s + %v: report differs from the direct count (-want +got):\n%s", o.Since.Format(time.RFC3339), w, diff)
				}
				if len(rep.Notes) != 0 {
					t.Errorf("notes for a window after the compacted records: %q", rep.Notes)
				}
				// Totals pool the direct counts of every component of an environment.
				pool := func(m map[rowKey]*direct) map[string]*direct {
					out := map[string]*direct{}
					for k, d := range m {
						if o.Environment != "" && k.environment != o.Environment {
							continue
						}
						p := out[k.environment]
						if p == nil {
							p = &direct{}
							out[k.environment] = p
						}
						p.passed, p.failed, p.canceled = p.passed+d.passed, p.failed+d.failed, p.canceled+d.canceled
						p.lead = append(p.lead, d.lead...)
						p.recovery = append(p.recovery, d.recovery...)
						p.approval = append(p.approval, d.approval...)
						p.duration = append(p.duration, d.duration...)
					}
					return out
				}
				pc, pp := pool(cur), pool(prev)
				wantTotals := map[string][2]Keys{}
				for _, k := range []map[string]*direct{pc, pp} {
					for env := range k {
						c, p := pc[env], pp[env]
						if c == nil {
							c = &direct{}
						}
						if p == nil {
							p = &direct{}
						}
						wantTotals[env] = [2]Keys{c.keys(days), p.keys(days)}
					}
				}
				gotTotals := map[string][2]Keys{}
				for _, tt := range rep.Totals {
					gotTotals[tt.Environment] = [2]Keys{tt.Current, tt.Previous}
				}
				if diff := cmp.Diff(wantTotals, gotTotals); diff != "" {
					t.Errorf("window %s + %v: totals differ from the pooled direct count (-want +got):\n%s", o.Since.Format(time.RFC3339), w, diff)
				}
			}

			// A window over everything (nothing compacted) counts what the exporter's fold counts.
			if !cutoff.IsZero() {
				return
			}
			rep, err := Build(context.Background(), log, Options{Since: epoch.Add(-4 * 24 * time.Hour), Until: end.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			agg := deployment.NewAggregate()
			for _, r := range all {
				agg.Apply(r)
			}
			for _, row := range rep.Rows {
				ek := row.Component + "\x00" + row.Environment
				if n := agg.Deployments[ek+"\x00acme/deploy\x00passed"]; uint64(row.Current.Passed) != n {
					t.Errorf("%s: %d passed, the exporter counts %d", ek, row.Current.Passed, n)
				}
				if n := agg.Deployments[ek+"\x00acme/deploy\x00failed"]; uint64(row.Current.Failed) != n {
					t.Errorf("%s: %d failed, the exporter counts %d", ek, row.Current.Failed, n)
				}
				var rec, lead uint64
				if h := agg.Recovery[ek]; h != nil {
					rec = h.Count
				}
				if h := agg.LeadTime[ek]; h != nil {
					lead = h.Count
				}
				if uint64(row.Current.RecoverySamples) != rec || uint64(row.Current.LeadTimeSamples) != lead {
					t.Errorf("%s: %d recoveries and %d lead times, the exporter's histograms count %d and %d",
						ek, row.Current.RecoverySamples, row.Current.LeadTimeSamples, rec, lead)
				}
			}
		})
	}
}

// TestCompactedWindowNoted: a window reaching before the oldest record of a compacted log says
// so, and marks the periods incomplete; the recovery from a compacted failure is still counted.
func TestCompactedWindowNoted(t *testing.T) {
	rec := func(i int, state string, fin time.Time) store.Record {
		return store.Record{Key: fmt.Sprint("k", i), Component: "api", Environment: "production", Pipeline: "acme/deploy",
			State: state, BuildID: fmt.Sprint(i), FinishedAt: fin, LeadTimeSeconds: -1, ApprovalWaitSeconds: -1}
	}
	log := memoryLog(t, []store.Record{
		rec(1, "passed", epoch),
		rec(2, "failed", epoch.Add(24*time.Hour)),
		rec(3, "passed", epoch.Add(10*24*time.Hour)), // recovers 9 days after the compacted failure
		rec(4, "passed", epoch.Add(11*24*time.Hour)),
	})
	if err := log.Compact(epoch.Add(5*24*time.Hour), deployment.Fold); err != nil {
		t.Fatal(err)
	}
	rep, err := Build(context.Background(), log, Options{Since: epoch.Add(10 * 24 * time.Hour), Until: epoch.Add(17 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 {
		t.Fatalf("rows %+v", rep.Rows)
	}
	row := rep.Rows[0]
	if row.Current.Passed != 2 || row.Current.RecoverySamples != 1 || *row.Current.RecoveryP50 != 9*86400 {
		t.Errorf("current %+v: want 2 passed and the 9-day recovery that the compacted base started", row.Current)
	}
	if !row.Current.Complete || row.Previous.Complete {
		t.Errorf("complete: current %v previous %v, want true and false (the previous period reaches before the oldest record)", row.Current.Complete, row.Previous.Complete)
	}
	if len(rep.Notes) != 1 || rep.CompactedRecords != 2 || rep.OldestRecord == nil || !rep.OldestRecord.Equal(epoch.Add(10*24*time.Hour)) {
		t.Errorf("notes %q, compacted %d, oldest %v", rep.Notes, rep.CompactedRecords, rep.OldestRecord)
	}
	rep, err = Build(context.Background(), log, Options{Since: epoch, Until: epoch.Add(14 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows[0].Current.Complete || len(rep.Notes) != 1 {
		t.Errorf("a window over the compacted records: complete %v, notes %q", rep.Rows[0].Current.Complete, rep.Notes)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	for _, c := range []struct {
		vs   []float64
		p    float64
		want float64
	}{
		{[]float64{1}, 0.5, 1}, {[]float64{1, 2}, 0.5, 1}, {[]float64{1, 2, 3}, 0.5, 2}, {[]float64{1, 2, 3, 4}, 0.5, 2},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9, 9}, {[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 0.9, 10},
		{[]float64{5, 5, 5}, 0.9, 5},
	} {
		if got := Percentile(c.vs, c.p); got == nil || *got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.vs, c.p, got, c.want)
		}
	}
	if Percentile(nil, 0.5) != nil {
		t.Error("a percentile of nothing")
	}
}

func TestLevels(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, c := range []struct {
		k    Keys
		want Levels
	}{
		{Keys{FrequencyPerDay: 1, LeadTimeP50: f(day), ChangeFailureRate: f(0.05), RecoveryP50: f(hour)}, Levels{LevelElite, LevelElite, LevelElite, LevelElite}},
		{Keys{FrequencyPerDay: 0.99, LeadTimeP50: f(day + 1), ChangeFailureRate: f(0.051), RecoveryP50: f(hour + 1)}, Levels{LevelHigh, LevelHigh, LevelHigh, LevelHigh}},
		{Keys{FrequencyPerDay: 1.0 / 8, LeadTimeP50: f(week + 1), ChangeFailureRate: f(0.11), RecoveryP50: f(day + 1)}, Levels{LevelMedium, LevelMedium, LevelMedium, LevelMedium}},
		{Keys{FrequencyPerDay: 1.0 / 31, LeadTimeP50: f(month + 1), ChangeFailureRate: f(0.16), RecoveryP50: f(week + 1)}, Levels{LevelLow, LevelLow, LevelLow, LevelLow}},
		{Keys{}, Levels{LevelLow, LevelNone, LevelNone, LevelNone}},
	} {
		if got := LevelsOf(c.k); got != c.want {
			t.Errorf("LevelsOf(%+v) = %+v, want %+v", c.k, got, c.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{},
		{Since: epoch, Until: epoch},
		{Since: epoch.Add(time.Hour), Until: epoch},
		{Since: epoch, Until: epoch.Add(MaxWindow + time.Hour)},
		{Since: epoch, Until: epoch.Add(time.Hour), GroupByOwner: true},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// compactingLog compacts the log in the middle of the first replay, as the exporter's
// retention may while /api/v1/report reads.
type compactingLog struct {
	*store.Memory
	cutoff  time.Time
	replays int
}

func (l *compactingLog) Replay(fn func(store.Record) error) error {
	l.replays++
	n := 0
	return l.Memory.Replay(func(r store.Record) error {
		if n++; n == 10 && l.replays == 1 {
			if err := l.Compact(l.cutoff, deployment.Fold); err != nil {
				return err
			}
		}
		return fn(r)
	})
}

// TestCompactionDuringReport: a compaction while the report reads makes it start again on the
// new base, and it then equals a report of the compacted log.
func TestCompactionDuringReport(t *testing.T) {
	recs := randomLog(rand.New(rand.NewPCG(7, 7)), 300)
	cutoff := epoch.Add(10 * 24 * time.Hour)
	l := &compactingLog{Memory: memoryLog(t, recs), cutoff: cutoff}
	o := Options{Since: epoch.Add(30 * 24 * time.Hour), Until: epoch.Add(37 * 24 * time.Hour)}
	got, err := Build(context.Background(), l, o)
	if err != nil {
		t.Fatal(err)
	}
	if l.replays != 2 || got.CompactedRecords == 0 {
		t.Fatalf("%d replays, %d compacted: the report did not start again on the compacted log", l.replays, got.CompactedRecords)
	}
	ref := memoryLog(t, recs)
	if err := ref.Compact(cutoff, deployment.Fold); err != nil {
		t.Fatal(err)
	}
	want, err := Build(context.Background(), ref, o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report across a compaction differs from one of the compacted log (-want +got):\n%s", diff)
	}
}
