package backstage_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage/backstagetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

func entity(name, pipeline string) map[string]any {
	return backstagetest.Entity("", name, "team", map[string]string{backstage.AnnotationPipelineSlug: pipeline})
}

// TestWatcherKeepsLastGoodAndRemoves runs over real HTTP: refresh, failures of each source (the
// API answering 5xx, every file vanishing) keep the last good components, and a component removed
// from the catalog disappears at the next good refresh.
func TestWatcherKeepsLastGoodAndRemoves(t *testing.T) {
	fake := backstagetest.New(testToken)
	fake.SetEntities(entity("shop", "acme/shop"), entity("search", "acme/search"))
	srv := httptest.NewServer(fake)
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "catalog-info.yaml")
	writeComponent(t, file, "billing", "acme/billing")

	w := backstage.NewWatcher([]backstage.Source{
		backstage.NewFileSource([]string{dir}, log.NewNopLogger()),
		newAPISource(t, srv.URL, testToken, srv.Client()),
	}, time.Minute, log.NewNopLogger())
	if s := w.Snapshot(); s == nil || len(s.Components) != 0 || s.LastRefreshSuccess {
		t.Fatalf("initial snapshot = %+v, want empty and not successful", s)
	}
	ctx := context.Background()

	step := func(name string, wantErr bool, wantSuccess bool, want []string, wantReasons []string) *backstage.Snapshot {
		t.Helper()
		err := w.Refresh(ctx)
		if (err != nil) != wantErr {
			t.Fatalf("%s: Refresh error = %v, want error %v", name, err, wantErr)
		}
		s := w.Snapshot()
		if diff := cmp.Diff(want, labels(s.Components)); diff != "" {
			t.Errorf("%s: components (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff(wantReasons, reasons(s.Problems)); diff != "" {
			t.Errorf("%s: problems (-want +got):\n%s", name, diff)
		}
		if s.LastRefreshSuccess != wantSuccess {
			t.Errorf("%s: LastRefreshSuccess = %v", name, s.LastRefreshSuccess)
		}
		return s
	}

	all := []string{"billing=acme/billing", "search=acme/search", "shop=acme/shop"}
	first := step("initial", false, true, all, nil)
	if first.LastSuccess.IsZero() {
		t.Fatal("LastSuccess not set after a good refresh")
	}

	fake.Fail(http.StatusInternalServerError)
	s := step("backstage 500", true, false, all, []string{srv.URL + "/api/catalog backstage_api"})
	if !s.LastSuccess.Equal(first.LastSuccess) {
		t.Errorf("LastSuccess moved on a failed refresh: %v -> %v", first.LastSuccess, s.LastSuccess)
	}

	fake.Fail(0)
	fake.SetEntities(entity("shop", "acme/shop")) // search removed from the catalog
	s = step("search removed", false, true, []string{"billing=acme/billing", "shop=acme/shop"}, nil)
	if !s.LastSuccess.After(first.LastSuccess) && !s.LastSuccess.Equal(first.LastSuccess) {
		t.Errorf("LastSuccess went back: %v", s.LastSuccess)
	}

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	step("every file vanished", true, false, []string{"billing=acme/billing", "shop=acme/shop"},
		[]string{dir + " unreadable_file"})

	// A file that is back but now claims the API component's pipeline: the duplicate rule applies
	// across sources.
	writeComponent(t, file, "billing", "acme/billing, acme/shop")
	step("duplicate across sources", false, true, []string{"billing=acme/billing,acme/shop"},
		[]string{"component:default/shop duplicate_pipeline"})
}

func TestWatcherLogsProblemsOnceAndNeverTheToken(t *testing.T) {
	fake := backstagetest.New(testToken)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var buf testenv.LogBuffer
	logger := log.NewLogfmtLogger(&buf)
	api, err := backstage.NewAPISource(srv.URL, "wrong-"+testToken, srv.Client(), logger)
	if err != nil {
		t.Fatal(err)
	}
	w := backstage.NewWatcher([]backstage.Source{
		backstage.NewFileSource([]string{"testdata/invalid/missing-name.yaml"}, logger),
		api,
	}, time.Minute, logger)
	for range 2 {
		_ = w.Refresh(context.Background())
	}
	out := buf.String()
	if strings.Contains(out, testToken) {
		t.Fatalf("the token is in the log:\n%s", out)
	}
	// Two missing_name problems and the API failure: warned about once, then at debug level.
	var warn, debug int
	for line := range strings.Lines(out) {
		if !strings.Contains(line, "reason=") {
			continue
		}
		switch {
		case strings.Contains(line, "level=warn"):
			warn++
		case strings.Contains(line, "level=debug"):
			debug++
		}
	}
	if warn != 3 || debug != 3 {
		t.Errorf("warn=%d debug=%d problem lines, want 3 and 3:\n%s", warn, debug, out)
	}
	if !strings.Contains(out, `entity="component:default/<no name>"`) || !strings.Contains(out, "missing-name.yaml:1") {
		t.Errorf("the log line does not name the entity and the file:\n%s", out)
	}
}

// inProcess is an http.RoundTripper that serves requests with a handler in the calling goroutine,
// so that synctest sees the Watcher durably blocked between refreshes.
type inProcess struct{ h http.Handler }

func (p inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func TestWatcherRunRefreshesEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := backstagetest.New(testToken)
		fake.SetEntities(entity("shop", "acme/shop"))
		client := &http.Client{Transport: inProcess{fake}, Timeout: 10 * time.Second}
		const interval = 5 * time.Minute
		w := backstage.NewWatcher([]backstage.Source{newAPISource(t, "http://backstage.test", testToken, client)}, interval, log.NewNopLogger())
		start := time.Now()

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		synctest.Wait()
		if s := w.Snapshot(); len(s.Components) != 1 || !s.LastSuccess.Equal(start) {
			t.Fatalf("after start: %+v, want shop read at %v", s, start)
		}

		fake.SetEntities(entity("shop", "acme/shop"), entity("search", "acme/search"))
		time.Sleep(interval - time.Second)
		synctest.Wait()
		if n := len(w.Snapshot().Components); n != 1 {
			t.Fatalf("refreshed before the interval: %d components", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if s := w.Snapshot(); len(s.Components) != 2 || !s.LastSuccess.Equal(start.Add(interval)) {
			t.Fatalf("after one interval: %d components at %v, want 2 at %v", len(s.Components), s.LastSuccess, start.Add(interval))
		}
		if n := len(fake.Requests()); n != 2 {
			t.Errorf("%d requests, want one per refresh", n)
		}

		cancel()
		<-done
	})
}

func TestWatcherSnapshotConcurrentUse(t *testing.T) {
	w := backstage.NewWatcher([]backstage.Source{backstage.NewFileSource([]string{"testdata/valid"}, log.NewNopLogger())}, time.Minute, log.NewNopLogger())
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				_ = w.Refresh(ctx)
				s := w.Snapshot()
				if len(s.Components) != 0 && len(s.Components) != 4 {
					t.Errorf("torn snapshot with %d components", len(s.Components))
				}
			}
		})
	}
	wg.Wait()
	if n := len(w.Snapshot().Components); n != 4 {
		t.Errorf("%d components, want 4", n)
	}
}

// TestWatcherLoadedAndReady: Loaded closes at the first refresh, failed or not, so that a
// consumer waiting on it never waits forever; Ready is true only once every source has been read:
// a Backstage answering 500 from the start, or a --catalog.file that does not exist, is not a
// loaded catalog. Once Ready, a failing source does not make it false again.
func TestWatcherLoadedAndReady(t *testing.T) {
	fake := backstagetest.New(testToken)
	fake.SetEntities(entity("shop", "acme/shop"))
	srv := httptest.NewServer(fake)
	defer srv.Close()
	absent := filepath.Join(t.TempDir(), "absent.yaml")
	for _, tc := range []struct {
		name      string
		sources   func() []backstage.Source
		wantReady bool
		heal      func()
	}{
		{"valid catalog", func() []backstage.Source {
			return []backstage.Source{backstage.NewFileSource([]string{"testdata/valid"}, log.NewNopLogger())}
		}, true, nil},
		{"every file missing", func() []backstage.Source {
			return []backstage.Source{backstage.NewFileSource([]string{absent}, log.NewNopLogger())}
		}, false, func() { writeComponent(t, absent, "back", "acme/back") }},
		{"backstage 500 from the start", func() []backstage.Source {
			fake.Fail(http.StatusInternalServerError)
			return []backstage.Source{newAPISource(t, srv.URL, testToken, srv.Client())}
		}, false, func() { fake.Fail(0) }},
		{"files good, backstage 500", func() []backstage.Source {
			fake.Fail(http.StatusInternalServerError)
			return []backstage.Source{
				backstage.NewFileSource([]string{"testdata/valid"}, log.NewNopLogger()),
				newAPISource(t, srv.URL, testToken, srv.Client()),
			}
		}, false, func() { fake.Fail(0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := backstage.NewWatcher(tc.sources(), time.Hour, log.NewNopLogger())
			select {
			case <-w.Loaded():
				t.Fatal("Loaded before any refresh")
			default:
			}
			if w.Ready() {
				t.Fatal("Ready before any refresh")
			}
			for range 2 {
				_ = w.Refresh(context.Background())
			}
			select {
			case <-w.Loaded():
			default:
				t.Fatal("Loaded still open after the first refresh")
			}
			if w.Ready() != tc.wantReady {
				t.Fatalf("Ready = %v after two refreshes, want %v (problems %v)", w.Ready(), tc.wantReady, w.Snapshot().Problems)
			}
			if tc.heal == nil {
				return
			}
			tc.heal()
			if err := w.Refresh(context.Background()); err != nil || !w.Ready() {
				t.Fatalf("after healing: err %v, Ready %v; want ready", err, w.Ready())
			}
			fake.Fail(http.StatusInternalServerError)
			_ = os.Remove(absent)
			defer fake.Fail(0)
			if err := w.Refresh(context.Background()); err == nil || !w.Ready() {
				t.Errorf("after failing again: err %v, Ready %v; want an error and still ready", err, w.Ready())
			}
		})
	}
}
