// Command fakebuildkite serves the project's fake Buildkite REST API, loaded with the fixture
// organization, so that the exporter can be tried (make demo) and measured without a Buildkite
// account. It writes the token the fake accepts and a catalog-info.yaml per fixture component into
// --dir. With --live it keeps deploying: a new build of a random fixture pipeline every
// --live.interval, mostly passing, sometimes failing, each running for a while before it finishes.
package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
)

func main() {
	listen := kingpin.Flag("listen", "Address to serve the fake API on.").Default("127.0.0.1:8089").String()
	dir := kingpin.Flag("dir", "Directory to write the token file and the catalog into.").Default("./demo").String()
	live := kingpin.Flag("live", "Keep adding deployments while running.").Bool()
	liveInterval := kingpin.Flag("live.interval", "How often --live starts a deployment.").Default("20s").Duration()
	kingpin.Parse()
	if err := run(*listen, *dir, *live, *liveInterval); err != nil {
		fmt.Fprintln(os.Stderr, "fakebuildkite:", err)
		os.Exit(1)
	}
}

func run(listen, dir string, live bool, interval time.Duration) error {
	f := buildkitetest.New()
	components := fixture.Populate(f, time.Now())
	if err := fixture.WriteFiles(dir, components); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: f.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if live {
		go deployForever(ctx, f, components, interval)
	}
	fmt.Printf("fake Buildkite API on http://%s/v2/ (organization %q); token in %s, catalog in %s\n",
		ln.Addr(), fixture.Org, filepath.Join(dir, "token"), filepath.Join(dir, "catalog"))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// deployForever starts a deployment of a random pipeline every interval and finishes it a little
// later, so that the demo's counters, durations and running gauges move.
func deployForever(ctx context.Context, f *buildkitetest.Fake, components []backstage.Component, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c := components[rand.IntN(len(components))]
		p := c.Pipelines[rand.IntN(len(c.Pipelines))]
		now := time.Now()
		b := f.AddBuild(p.Org, p.Pipeline, buildkite.Build{
			State: buildkite.StateRunning, Branch: "main", Commit: fmt.Sprintf("%040x", rand.Uint64()),
			CreatedAt: buildkite.Timestamp{Time: now}, StartedAt: buildkite.Timestamp{Time: now},
			MetaData: map[string]string{"version": fmt.Sprintf("1.%d.0", n)},
		})
		state := buildkite.StatePassed
		if rand.IntN(5) == 0 {
			state = buildkite.StateFailed
		}
		go func() {
			select {
			case <-ctx.Done():
			case <-time.After(interval / 2):
				_ = f.FinishBuild(p.Org, p.Pipeline, b.Number, state, time.Now())
			}
		}()
	}
}
