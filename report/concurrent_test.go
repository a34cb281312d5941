package report

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// pausingLog stops the replay of a record in the middle of the log until resume is closed.
type pausingLog struct {
	*store.Bolt
	at      int
	paused  chan struct{}
	resume  chan struct{}
	replays int
}

func (l *pausingLog) Replay(fn func(store.Record) error) error {
	l.replays++
	n := 0
	return l.Bolt.Replay(func(r store.Record) error {
		if n++; n == l.at && l.replays == 1 {
			close(l.paused)
			<-l.resume
		}
		return fn(r)
	})
}

// TestReportDoesNotHoldUpWrites: while a report over the exporter's own bbolt log is in the
// middle of its replay, the poller's Append goes through (the replay reads in short read
// transactions and calls back outside them), and the report still counts what it read.
func TestReportDoesNotHoldUpWrites(t *testing.T) {
	b, err := store.OpenBolt(t.TempDir(), store.BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	recs := randomLog(rand.New(rand.NewPCG(5, 5)), 10_000)
	for i := 0; i < len(recs); i += 1000 {
		if _, err := b.Append(store.Batch{Records: recs[i : i+1000]}); err != nil {
			t.Fatal(err)
		}
	}
	l := &pausingLog{Bolt: b, at: 6000, paused: make(chan struct{}), resume: make(chan struct{})}
	done := make(chan error, 1)
	var rep *Report
	go func() {
		var err error
		rep, err = Build(context.Background(), l, Options{Since: epoch, Until: epoch.Add(400 * 24 * time.Hour)})
		done <- err
	}()
	<-l.paused
	appended := make(chan error, 1)
	go func() {
		fin := epoch.Add(500 * 24 * time.Hour)
		_, err := b.Append(store.Batch{Records: []store.Record{{Key: fmt.Sprint("new@", fin.Unix()), Component: "api", Environment: "production",
			State: "passed", FinishedAt: fin, LeadTimeSeconds: -1, ApprovalWaitSeconds: -1}}})
		appended <- err
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Append did not return while a report was paused in the middle of its replay")
	}
	close(l.resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rep.RecordsRead != len(recs)+1 {
		t.Errorf("the report read %d records, want the %d stored and the one appended during its replay", rep.RecordsRead, len(recs)+1)
	}
}
