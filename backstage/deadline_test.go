package backstage_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

// hangOn makes reads of files named name block until the returned release is called, as on a
// hung network file system.
func hangOn(t *testing.T, name string) (release func()) {
	t.Helper()
	ch := make(chan struct{})
	restore := backstage.SetBeforeRead(func(path string) {
		if filepath.Base(path) == name {
			<-ch
		}
	})
	t.Cleanup(restore)
	return func() { close(ch) }
}

// TestFileSourceDeadline: a load blocked in a read returns at its deadline with the files read
// before, a problem naming the blocked file, and an error (so that callers keep their last good
// catalog); while the read stays blocked, further loads fail at once rather than pile up; once it
// returns, loads work again.
func TestFileSourceDeadline(t *testing.T) {
	dir := t.TempDir()
	writeComponent(t, filepath.Join(dir, "a.yaml"), "a", "acme/a")
	writeComponent(t, filepath.Join(dir, "m-slow.yaml"), "slow", "acme/slow")
	writeComponent(t, filepath.Join(dir, "z.yaml"), "z", "acme/z")

	synctest.Test(t, func(t *testing.T) {
		release := hangOn(t, "m-slow.yaml")
		src := backstage.NewFileSource([]string{dir}, log.NewNopLogger())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		res, err := src.Load(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the deadline", err)
		}
		if d := time.Since(start); d != time.Minute {
			t.Errorf("Load returned after %v, want its 1m deadline", d)
		}
		if diff := cmp.Diff([]string{"a=acme/a"}, labels(res.Components)); diff != "" {
			t.Errorf("components read before the deadline (-want +got):\n%s", diff)
		}
		slow := filepath.Join(dir, "m-slow.yaml")
		if len(res.Problems) != 1 || res.Problems[0].Source != slow || res.Problems[0].Reason != backstage.ReasonUnreadableFile ||
			!strings.Contains(res.Problems[0].Message, "deadline") {
			t.Errorf("problems = %v, want one unreadable_file at %s about the deadline", res.Problems, slow)
		}

		// Still blocked: the next load fails at once, naming the file.
		start = time.Now()
		res, err = src.Load(context.Background())
		if err == nil || time.Since(start) != 0 || len(res.Problems) != 1 || res.Problems[0].Source != slow ||
			!strings.Contains(res.Problems[0].Message, "still blocked") {
			t.Errorf("load while blocked: err %v, problems %v", err, res.Problems)
		}

		release()
		synctest.Wait() // the abandoned load finishes and adds nothing
		res, err = src.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a=acme/a", "slow=acme/slow", "z=acme/z"}, labels(res.Components)); diff != "" {
			t.Errorf("components after the read returned (-want +got):\n%s", diff)
		}
	})
}

// TestWatcherRefreshDeadline: the Watcher bounds each refresh by its interval. A first refresh
// that hits it publishes what was read and the problem, and is not Ready; a later good refresh
// is; a later refresh that hits the deadline again keeps the last good components.
func TestWatcherRefreshDeadline(t *testing.T) {
	dir := t.TempDir()
	writeComponent(t, filepath.Join(dir, "a.yaml"), "a", "acme/a")
	writeComponent(t, filepath.Join(dir, "m-slow.yaml"), "slow", "acme/slow")

	synctest.Test(t, func(t *testing.T) {
		release := hangOn(t, "m-slow.yaml")
		const interval = 5 * time.Minute
		w := backstage.NewWatcher([]backstage.Source{backstage.NewFileSource([]string{dir}, log.NewNopLogger())}, interval, log.NewNopLogger())
		start := time.Now()
		if err := w.Refresh(context.Background()); err == nil {
			t.Error("a refresh cut short by its deadline succeeded")
		}
		if d := time.Since(start); d != interval {
			t.Errorf("refresh took %v, want the %v interval", d, interval)
		}
		s := w.Snapshot()
		if diff := cmp.Diff([]string{"a=acme/a"}, labels(s.Components)); diff != "" {
			t.Errorf("components (-want +got):\n%s", diff)
		}
		if s.LastRefreshSuccess || w.Ready() || len(s.Problems) != 1 {
			t.Errorf("success %v, ready %v, problems %v; want a failed refresh with one problem", s.LastRefreshSuccess, w.Ready(), s.Problems)
		}
		select {
		case <-w.Loaded():
		default:
			t.Error("Loaded still open after the first refresh")
		}

		release()
		synctest.Wait()
		if err := w.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		all := []string{"a=acme/a", "slow=acme/slow"}
		if got := labels(w.Snapshot().Components); !w.Ready() || !cmp.Equal(got, all) {
			t.Errorf("after a good refresh: ready %v, components %v", w.Ready(), got)
		}

		release = hangOn(t, "m-slow.yaml")
		if err := w.Refresh(context.Background()); err == nil {
			t.Error("a refresh cut short by its deadline succeeded")
		}
		if got := labels(w.Snapshot().Components); !w.Ready() || !cmp.Equal(got, all) {
			t.Errorf("after a refresh cut short: ready %v, components %v; want the last good ones", w.Ready(), got)
		}
		release()
		synctest.Wait()
	})
}
