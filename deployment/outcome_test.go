package deployment

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func at(min float64) buildkite.Timestamp {
	return ts(t0.Add(time.Duration(min * float64(time.Minute))))
}

// timeline builds a build's job list step by step, as Buildkite records it.
type timeline struct{ b buildkite.Build }

func newTimeline() *timeline {
	return &timeline{b: buildkite.Build{ID: "b1", Number: 7, Commit: sha(1), CreatedAt: at(0), StartedAt: at(1),
		URL:      "https://api.buildkite.com/v2/organizations/acme/pipelines/shop-deploy/builds/7",
		MetaData: map[string]string{"environment": "production"}, Jobs: []buildkite.Job{}}}
}

// job adds a script job that ran from start to finish (minutes) in state.
func (tl *timeline) job(id, state string, created, start, finish float64) *timeline {
	tl.b.Jobs = append(tl.b.Jobs, buildkite.Job{ID: id, Type: buildkite.JobTypeScript, State: state,
		CreatedAt: at(created), ScheduledAt: at(created), RunnableAt: at(created), StartedAt: at(start), FinishedAt: at(finish)})
	return tl
}

// retry retries job id at minute when (retryType manual or automatic) with a new job newID.
func (tl *timeline) retry(id, newID string, when float64, retryType string) *timeline {
	for i := range tl.b.Jobs {
		if tl.b.Jobs[i].ID == id {
			tl.b.Jobs[i].Retried, tl.b.Jobs[i].RetriedInJobID = true, newID
		}
	}
	tl.b.Jobs = append(tl.b.Jobs, buildkite.Job{ID: newID, Type: buildkite.JobTypeScript, State: buildkite.StateScheduled,
		CreatedAt: at(when), ScheduledAt: at(when), RunnableAt: at(when), RetryType: retryType,
		RetrySource: &buildkite.RetrySource{JobID: id, RetryType: retryType}})
	tl.b.State, tl.b.FinishedAt = buildkite.StateRunning, buildkite.Timestamp{}
	return tl
}

// run sets job id's run and outcome.
func (tl *timeline) run(id, state string, start, finish float64) *timeline {
	for i := range tl.b.Jobs {
		if tl.b.Jobs[i].ID == id {
			tl.b.Jobs[i].State, tl.b.Jobs[i].StartedAt, tl.b.Jobs[i].FinishedAt = state, at(start), at(finish)
		}
	}
	return tl
}

// finish finishes the build at minute when; the API stamps finished_at a little after its last job.
func (tl *timeline) finish(state string, when float64) *timeline {
	tl.b.State, tl.b.FinishedAt = state, at(when)
	if state == buildkite.StateFailed && tl.b.FailingAt.IsZero() {
		tl.b.FailingAt = at(when)
	}
	return tl
}

// view is a copy of the build as a listing shows it now.
func (tl *timeline) view() buildkite.Build {
	b := tl.b
	b.Jobs = append([]buildkite.Job{}, tl.b.Jobs...)
	return b
}

func TestOutcomesWithoutJobs(t *testing.T) {
	b := newTimeline().finish(buildkite.StateFailed, 5).view()
	b.Jobs = nil
	want := []Outcome{{State: stateFailed, StartedAt: at(1).Time, FinishedAt: at(5).Time, Attempt: -1}}
	if diff := cmp.Diff(want, Outcomes(&b), cmp.AllowUnexported(Outcome{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	b.State, b.FinishedAt = buildkite.StateRunning, buildkite.Timestamp{}
	if got := Outcomes(&b); got != nil {
		t.Errorf("a running build has outcomes: %+v", got)
	}
}

func TestOutcomesFromRetries(t *testing.T) {
	ignore := cmpopts.IgnoreUnexported(Outcome{})
	for _, tc := range []struct {
		name string
		b    buildkite.Build
		want []Outcome
	}{
		{
			name: "failed, no retry: timed by its jobs",
			b:    newTimeline().job("j1", "passed", 0, 1, 3).job("j2", "failed", 0, 3.5, 6).finish("failed", 6.1).view(),
			want: []Outcome{{State: stateFailed, StartedAt: at(1).Time, FinishedAt: at(6).Time, Attempt: 0}},
		},
		{
			name: "failed, retried once finished, passed",
			b: newTimeline().job("j1", "passed", 0, 1, 3).job("j2", "failed", 0, 3.5, 6).finish("failed", 6.1).
				retry("j2", "j3", 30, buildkite.RetryTypeManual).run("j3", "passed", 31, 35).finish("passed", 35.1).view(),
			want: []Outcome{
				{State: stateFailed, StartedAt: at(1).Time, FinishedAt: at(6).Time, Attempt: 0, Recovered: true},
				{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(35.1).Time, Attempt: 1},
			},
		},
		{
			name: "retried while another job still ran: never a terminal failure",
			b: newTimeline().job("j1", "passed", 0, 1, 10).job("j2", "failed", 0, 1, 4).
				retry("j2", "j3", 5, buildkite.RetryTypeManual).run("j3", "passed", 5.5, 8).finish("passed", 10.1).view(),
			want: []Outcome{{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(10.1).Time, Attempt: 0}},
		},
		{
			name: "automatic retry: never a terminal failure",
			b: newTimeline().job("j1", "failed", 0, 1, 4).
				retry("j1", "j2", 4, buildkite.RetryTypeAutomatic).run("j2", "passed", 4.5, 8).finish("passed", 8.1).view(),
			want: []Outcome{{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(8.1).Time, Attempt: 0}},
		},
		{
			name: "a job waiting for an agent keeps the build open",
			b: func() buildkite.Build {
				tl := newTimeline().job("j1", "failed", 0, 1, 4).job("j2", "passed", 0, 9, 12)
				tl.b.Jobs[1].RunnableAt = at(2) // runnable at 2, started at 9: queued while j1 was retried
				return tl.retry("j1", "j3", 5, buildkite.RetryTypeManual).run("j3", "passed", 6, 7).finish("passed", 12.1).view()
			}(),
			want: []Outcome{{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(12.1).Time, Attempt: 0}},
		},
		{
			name: "a job behind a wait step that never became runnable does not keep it open",
			b: func() buildkite.Build {
				tl := newTimeline().job("j1", "failed", 0, 1, 4)
				tl.b.Jobs = append(tl.b.Jobs, buildkite.Job{ID: "w", Type: buildkite.JobTypeWaiter, CreatedAt: at(0)},
					buildkite.Job{ID: "j2", Type: buildkite.JobTypeScript, State: "waiting_failed", CreatedAt: at(0)})
				tl.finish("failed", 4.1).retry("j1", "j3", 20, buildkite.RetryTypeManual).run("j3", "passed", 21, 22)
				tl.run("j2", "passed", 22.5, 25)
				tl.b.Jobs[2].RunnableAt = at(22.2)
				return tl.finish("passed", 25.1).view()
			}(),
			want: []Outcome{
				{State: stateFailed, StartedAt: at(1).Time, FinishedAt: at(4).Time, Attempt: 0, Recovered: true},
				{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(25.1).Time, Attempt: 1},
			},
		},
		{
			name: "failed twice, then passed",
			b: newTimeline().job("j1", "failed", 0, 1, 4).finish("failed", 4.1).
				retry("j1", "j2", 10, buildkite.RetryTypeManual).run("j2", "failed", 11, 13).finish("failed", 13.1).
				retry("j2", "j3", 20, buildkite.RetryTypeManual).run("j3", "passed", 21, 24).finish("passed", 24.1).view(),
			want: []Outcome{
				{State: stateFailed, StartedAt: at(1).Time, FinishedAt: at(4).Time, Attempt: 0, Recovered: true},
				{State: stateFailed, StartedAt: at(11).Time, FinishedAt: at(13).Time, Attempt: 1, Recovered: true},
				{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(24.1).Time, Attempt: 2},
			},
		},
		{
			name: "a passed build whose passed job is retried: the earlier pass is not recovered",
			b: newTimeline().job("j1", "passed", 0, 1, 4).finish("passed", 4.1).
				retry("j1", "j2", 10, buildkite.RetryTypeManual).run("j2", "passed", 11, 13).finish("passed", 13.1).view(),
			want: []Outcome{{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(13.1).Time, Attempt: 1}},
		},
		{
			name: "soft failure retried: not a failure",
			b: func() buildkite.Build {
				tl := newTimeline().job("j1", "failed", 0, 1, 4)
				tl.b.Jobs[0].SoftFailed = true
				return tl.finish("passed", 4.1).retry("j1", "j2", 10, buildkite.RetryTypeManual).run("j2", "passed", 11, 13).finish("passed", 13.1).view()
			}(),
			want: []Outcome{{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(13.1).Time, Attempt: 1}},
		},
		{
			name: "retry linked only by retry_source",
			b: func() buildkite.Build {
				tl := newTimeline().job("j1", "failed", 0, 1, 4).finish("failed", 4.1).retry("j1", "j2", 10, "").run("j2", "passed", 11, 13)
				tl.b.Jobs[0].RetriedInJobID = ""
				return tl.finish("passed", 13.1).view()
			}(),
			want: []Outcome{
				{State: stateFailed, StartedAt: at(1).Time, FinishedAt: at(4).Time, Attempt: 0, Recovered: true},
				{State: statePassed, StartedAt: at(1).Time, FinishedAt: at(13.1).Time, Attempt: 1},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Outcomes(&tc.b), ignore); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestLiveAndRecoveredAgree is the rule that makes replicas agree: an exporter that saw a
// failure live (its build listed failed, jobs fetched) and one that first sees the build after
// the retry passed store the same record for that failure, field for field, and so the same
// series.
func TestLiveAndRecoveredAgree(t *testing.T) {
	cls := NewClassifier(config.Default())
	comp := backstage.Component{Label: "shop", Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: "shop-deploy"}}}
	in := func(builds ...buildkite.Build) Input {
		return Input{Organization: "acme", Pipelines: map[string]backstage.Component{"shop-deploy": comp}, Finished: builds, Now: t0.Add(time.Hour)}
	}
	tl := newTimeline().job("j1", "passed", 0, 1, 3)
	tl.b.Jobs = append(tl.b.Jobs, buildkite.Job{ID: "gate", Type: buildkite.JobTypeManual, State: "unblocked", CreatedAt: at(0), RunnableAt: at(3), UnblockedAt: at(8)})
	tl.job("j2", "failed", 0, 8.5, 12).finish("failed", 12.2)
	live := cls.Classify(in(tl.view())).Records
	tl.retry("j2", "j3", 40, buildkite.RetryTypeManual).run("j3", "passed", 41, 44).finish("passed", 44.3)
	later := cls.Classify(in(tl.view())).Records
	if len(live) != 1 || len(later) != 2 {
		t.Fatalf("live %d records, later %d; want 1 and 2:\n%+v\n%+v", len(live), len(later), live, later)
	}
	if diff := cmp.Diff(live[0], later[0]); diff != "" {
		t.Errorf("the failure seen live and the failure recovered after the retry differ (-live +recovered):\n%s", diff)
	}
	if want := store.AttemptKey("b1", 0, "production"); live[0].Key != want {
		t.Errorf("key %q, want %q", live[0].Key, want)
	}
	// The approval belongs to the failed attempt only: the pass does not count it again.
	if live[0].ApprovalWaitSeconds != 300 || later[1].ApprovalWaitSeconds != -1 {
		t.Errorf("approval waits: failed %v (want 300), passed %v (want -1)", live[0].ApprovalWaitSeconds, later[1].ApprovalWaitSeconds)
	}
	if later[1].State != statePassed || later[1].Key != store.Key("b1", at(44.3).Time, "production") {
		t.Errorf("passed record: %+v", later[1])
	}
}

func TestNeedsJobs(t *testing.T) {
	seen := NewClassifier(config.Default())
	off := config.Default()
	off.ApprovalTiming = config.ApprovalTimingOff
	for _, tc := range []struct {
		name    string
		cls     Classifier
		b       buildkite.Build
		blocked bool
		want    bool
	}{
		{"passed", seen, buildkite.Build{State: "passed", FinishedAt: at(1)}, false, false},
		{"failed", seen, buildkite.Build{State: "failed", FinishedAt: at(1)}, false, true},
		{"failed, jobs listed", seen, buildkite.Build{State: "failed", FinishedAt: at(1), Jobs: []buildkite.Job{}}, false, false},
		{"passed after a failure (failing_at)", seen, buildkite.Build{State: "passed", FinishedAt: at(2), FailingAt: at(1)}, false, true},
		{"passed, seen blocked", seen, buildkite.Build{State: "passed", FinishedAt: at(1)}, true, true},
		{"passed, seen blocked, approval timing off", NewClassifier(off), buildkite.Build{State: "passed", FinishedAt: at(1)}, true, false},
		{"running", seen, buildkite.Build{State: "running"}, true, false},
	} {
		if got := tc.cls.NeedsJobs(&tc.b, tc.blocked); got != tc.want {
			t.Errorf("%s: NeedsJobs = %v, want %v", tc.name, got, tc.want)
		}
	}
}
