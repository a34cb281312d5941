package deployment

import (
	"slices"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// Outcome is one terminal outcome a build reached. A build that finished, was retried and
// finished again reached several; only its last is in the build's own state and timestamps
// (the retry overwrote finished_at), the earlier ones are recovered from its jobs.
type Outcome struct {
	State      string // passed, failed or canceled
	StartedAt  time.Time
	FinishedAt time.Time
	// Attempt is the number of terminal retries (see terminalRetries) before this outcome: 0
	// for a build's first finish. It is -1 when the build's jobs were not read, so it is not
	// known.
	Attempt int
	// Recovered is set for an earlier outcome read from a retried job rather than from the
	// build's state.
	Recovered bool
	// from and to bound the outcome's attempt on Buildkite's clock, (from, to]: zero from is
	// the build's start, zero to is open. Approval waits unblocked in it belong to it.
	from, to time.Time
}

// Outcomes returns the terminal outcomes of b, oldest first. b.Jobs == nil means the jobs were
// not read (a listing with exclude_jobs): then only the build's own state counts, as the
// attempt it is cannot be known. Jobs must have been read with include_retried_jobs, or
// retried attempts are hidden (reference §5).
//
// The rule, from the evidence Buildkite keeps: a job J with retried: true whose retry R
// (J.retried_in_job_id, or the job whose retry_source names J) is a manual retry made when the
// build had finished — no other job was running, waiting for an agent or waiting on a block
// step at R's created_at — ended an attempt: a terminal retry. The attempt before it failed if
// a hard failure (failed or timed_out, not soft_failed) stood among the latest attempts of its
// jobs at that moment; such a failed attempt is an outcome even though the build now shows a
// later state. A retry made while other jobs still ran (the build was running or failing, never
// finished) and every automatic retry (made as the job fails, before the build can finish) end
// nothing. The attempt's times come from its jobs: started at its first job start, finished at
// its last job finish. A failed build without retries is timed the same way (when it has jobs
// with times), so that an exporter that saw the failure live and one that recovers it later
// agree on every value.
func Outcomes(b *buildkite.Build) []Outcome {
	state, finished := outcomeState(b)
	if b.Jobs == nil {
		if !finished {
			return nil
		}
		return []Outcome{{State: state, StartedAt: b.StartedAt.Time, FinishedAt: b.FinishedAt.Time, Attempt: -1}}
	}
	jobs := b.Jobs
	var out []Outcome
	var from time.Time
	retryOf := retries(jobs)
	terminal := terminalRetries(jobs, retryOf)
	for i, at := range terminal {
		if failedBefore(jobs, retryOf, at) {
			if s, f := span(jobs, from, at); !f.IsZero() {
				out = append(out, Outcome{State: stateFailed, StartedAt: s, FinishedAt: f, Attempt: i, Recovered: true, from: from, to: at})
			}
		}
		from = at
	}
	if !finished {
		return out
	}
	last := Outcome{State: state, StartedAt: b.StartedAt.Time, FinishedAt: b.FinishedAt.Time, Attempt: len(terminal), from: from}
	if state == stateFailed {
		if s, f := span(jobs, from, time.Time{}); !f.IsZero() {
			last.StartedAt, last.FinishedAt = s, f
		}
	}
	return append(out, last)
}

// retries maps each retried job's id to its retry: the job its retried_in_job_id names, else
// the job whose retry_source names it. Both links are read because either may be missing.
func retries(jobs []buildkite.Job) map[string]*buildkite.Job {
	byID := make(map[string]*buildkite.Job, len(jobs))
	for i := range jobs {
		if jobs[i].ID != "" {
			byID[jobs[i].ID] = &jobs[i]
		}
	}
	out := map[string]*buildkite.Job{}
	for i := range jobs {
		if rs := jobs[i].RetrySource; rs != nil && rs.JobID != "" {
			out[rs.JobID] = &jobs[i]
		}
	}
	for i := range jobs {
		if r := byID[jobs[i].RetriedInJobID]; r != nil && jobs[i].RetriedInJobID != "" {
			out[jobs[i].ID] = r
		}
	}
	return out
}

// terminalRetries returns the times (the retry job's created_at) of the build's terminal
// retries, ascending; retries made at the same instant (retry all failed jobs) are one.
func terminalRetries(jobs []buildkite.Job, retryOf map[string]*buildkite.Job) []time.Time {
	type event struct {
		at time.Time
		// batch: the retried job existed before the retry, so retries at the same instant are
		// one "retry failed jobs" action; a retry of a job made at that very instant is not.
		batch bool
	}
	var events []event
	for i := range jobs {
		j := &jobs[i]
		if !j.Retried {
			continue
		}
		r := retryOf[j.ID]
		if r == nil || automatic(r) {
			continue
		}
		at := r.CreatedAt.Time
		if at.IsZero() || j.FinishedAt.IsZero() || j.FinishedAt.After(at) {
			continue // not enough evidence to place the retry
		}
		if !anyActive(jobs, at) {
			events = append(events, event{at: at, batch: j.CreatedAt.Before(at)})
		}
	}
	slices.SortStableFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
	events = slices.CompactFunc(events, func(a, b event) bool { return a.batch && b.batch && a.at.Equal(b.at) })
	out := make([]time.Time, len(events))
	for i, e := range events {
		out[i] = e.at
	}
	return out
}

func automatic(r *buildkite.Job) bool {
	return r.RetryType == buildkite.RetryTypeAutomatic ||
		(r.RetrySource != nil && r.RetrySource.RetryType == buildkite.RetryTypeAutomatic)
}

// anyActive says whether a job created before at was still going at at: it had become runnable
// (or was waiting on its block step) and had not finished (or been unblocked). A job that never
// became runnable before at (behind a wait step, broken, skipped) does not keep a build open.
func anyActive(jobs []buildkite.Job, at time.Time) bool {
	for i := range jobs {
		j := &jobs[i]
		if !j.CreatedAt.Before(at) {
			continue // the retry itself, and jobs made after it
		}
		switch j.Type {
		case buildkite.JobTypeWaiter:
			continue
		case buildkite.JobTypeManual:
			if j.State == "blocked_failed" || j.State == "unblocked_failed" {
				continue // the build failed around it: not what kept it open
			}
			gate := firstSet(j.RunnableAt.Time, j.ScheduledAt.Time)
			if !gate.IsZero() && !gate.After(at) && (j.UnblockedAt.IsZero() || j.UnblockedAt.After(at)) {
				return true
			}
		default:
			began := firstSet(j.RunnableAt.Time, j.ScheduledAt.Time, j.StartedAt.Time)
			if !began.IsZero() && !began.After(at) && (j.FinishedAt.IsZero() || j.FinishedAt.After(at)) {
				return true
			}
		}
	}
	return false
}

// failedBefore says whether, just before the retry made at at, a hard failure stood among the
// latest attempts of the build's jobs: a job that had finished failed or timed out, not soft
// failed, and had not been retried before at.
func failedBefore(jobs []buildkite.Job, retryOf map[string]*buildkite.Job, at time.Time) bool {
	for i := range jobs {
		j := &jobs[i]
		if j.Type != buildkite.JobTypeScript || j.SoftFailed || (j.State != buildkite.StateFailed && j.State != "timed_out") {
			continue
		}
		if j.FinishedAt.IsZero() || j.FinishedAt.After(at) || !j.CreatedAt.Before(at) {
			continue // not finished by then, or made by this retry or a later one
		}
		if r := retryOf[j.ID]; r != nil && r.CreatedAt.Before(at) {
			continue // superseded by an earlier retry
		}
		return true
	}
	return false
}

// span is when the attempt (from, to] ran: its first job start and last job finish (zero to: no
// end). Zero finished means no job of the attempt has a finish time.
func span(jobs []buildkite.Job, from, to time.Time) (started, finished time.Time) {
	in := func(t time.Time) bool {
		return !t.IsZero() && (from.IsZero() || t.After(from)) && (to.IsZero() || !t.After(to))
	}
	for i := range jobs {
		j := &jobs[i]
		if j.Type == buildkite.JobTypeManual || j.Type == buildkite.JobTypeWaiter {
			continue
		}
		if !to.IsZero() && !j.CreatedAt.IsZero() && !j.CreatedAt.Before(to) {
			continue // made by the retry that ended the attempt, or later
		}
		if in(j.StartedAt.Time) && (started.IsZero() || j.StartedAt.Before(started)) {
			started = j.StartedAt.Time
		}
		if in(j.FinishedAt.Time) && j.FinishedAt.After(finished) {
			finished = j.FinishedAt.Time
		}
	}
	if started.IsZero() || started.After(finished) {
		started = finished
	}
	return started, finished
}

// approvalWaitIn sums, over the block steps unblocked within the outcome's attempt,
// runnable_at → unblocked_at; -1 when there is none. A gate belongs to one attempt only, so a
// retried build does not count its approval twice.
func approvalWaitIn(jobs []buildkite.Job, o Outcome) float64 {
	total, found := 0.0, false
	for _, j := range jobs {
		if j.Type != buildkite.JobTypeManual || j.UnblockedAt.IsZero() {
			continue
		}
		u := j.UnblockedAt.Time
		if (!o.from.IsZero() && !u.After(o.from)) || (!o.to.IsZero() && u.After(o.to)) {
			continue
		}
		gate := firstSet(j.RunnableAt.Time, j.ScheduledAt.Time, j.CreatedAt.Time)
		if gate.IsZero() || u.Before(gate) {
			continue
		}
		total += u.Sub(gate).Seconds()
		found = true
	}
	if !found {
		return -1
	}
	return total
}

func firstSet(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}
