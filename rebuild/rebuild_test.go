package rebuild

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
)

const (
	readToken  = "bkua_read_0123456789abcdef"
	writeToken = "bkua_write_0123456789abcdef"
)

var t0 = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

var shop = backstage.Component{Name: "shop", Namespace: "default", Label: "shop", Ref: "component:default/shop",
	Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: "shop-deploy"}}}

// deploy adds a finished deployment build of shop to env, minute m after t0.
func deploy(f *buildkitetest.Fake, m int, state, env, version string) buildkite.Build {
	at := t0.Add(time.Duration(m) * time.Minute)
	return f.AddBuild("acme", "shop-deploy", buildkite.Build{
		Commit: strings.Repeat(string(rune('a'+m%26)), 40), Branch: "main", State: state,
		CreatedAt: buildkite.Timestamp{Time: at.Add(-5 * time.Minute)}, StartedAt: buildkite.Timestamp{Time: at.Add(-4 * time.Minute)},
		FinishedAt: buildkite.Timestamp{Time: at}, MetaData: map[string]string{"environment": env, "version": version},
	})
}

func fake(t *testing.T) (*buildkitetest.Fake, *buildkite.Client, *buildkite.Client) {
	t.Helper()
	f := buildkitetest.New()
	f.SetToken(readToken, buildkite.ScopeReadBuilds, buildkite.ScopeReadPipelines)
	f.SetToken(writeToken, buildkite.ScopeReadBuilds, buildkite.ScopeWriteBuilds)
	base := f.Start()
	t.Cleanup(f.Close)
	client := func(tok string) *buildkite.Client {
		c, err := buildkite.NewClient(buildkite.Config{BaseURL: base, Token: secret.Secret(tok), RequestsPerMinute: math.Inf(1)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return f, client(readToken), client(writeToken)
}

func TestRebuildsTheFailingBuild(t *testing.T) {
	f, read, write := fake(t)
	deploy(f, 0, "passed", "production", "1.0.0")
	deploy(f, 10, "passed", "staging", "1.1.0")
	failed := deploy(f, 20, "failed", "production", "1.1.0")
	deploy(f, 30, "failed", "staging", "1.2.0") // staging's failure is not production's
	deploy(f, 40, "canceled", "production", "1.2.0")

	p, err := Find(context.Background(), read, nil, shop, "prod", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if p.Build.Number != failed.Number || p.Pipeline != "acme/shop-deploy" || p.Version != "1.1.0" || p.Build.Commit != failed.Commit || p.Environment != "production" {
		t.Fatalf("plan = build #%d of %s, version %q, commit %s, env %s; want #%d, 1.1.0, %s", p.Build.Number, p.Pipeline, p.Version, p.Build.Commit, p.Environment, failed.Number, failed.Commit)
	}
	if err := CheckToken(context.Background(), write); err != nil {
		t.Fatal(err)
	}
	nb, err := Do(context.Background(), write, p)
	if err != nil {
		t.Fatal(err)
	}
	if nb.RebuiltFrom == nil || nb.RebuiltFrom.Number != failed.Number || nb.Commit != failed.Commit {
		t.Errorf("new build %+v, want a rebuild of #%d", nb, failed.Number)
	}
	var puts []buildkitetest.Request
	for _, r := range f.Requests() {
		if r.Method != http.MethodGet {
			puts = append(puts, r)
		}
	}
	if len(puts) != 1 || !strings.HasSuffix(puts[0].Path, "/builds/3/rebuild") {
		t.Errorf("writes sent: %+v, want one PUT of build 3's rebuild", puts)
	}
}

func TestRefusesWhenNotFailing(t *testing.T) {
	f, read, _ := fake(t)
	deploy(f, 0, "passed", "production", "1.0.0")
	_, err := Find(context.Background(), read, nil, shop, "production", t0.Add(time.Hour))
	var nf *NotFailingError
	if !errors.As(err, &nf) || nf.Failed != nil || nf.LaterPass == nil || nf.LaterPass.Number != 1 {
		t.Fatalf("err = %v, want not failing with no failure", err)
	}
	if !strings.Contains(err.Error(), "no failed deployment") {
		t.Errorf("error %q", err)
	}
}

// A failure followed by a pass: rebuilding the failure would roll back; the refusal names the
// later pass.
func TestRefusesAfterALaterPass(t *testing.T) {
	f, read, write := fake(t)
	failed := deploy(f, 0, "failed", "production", "1.0.0")
	passed := deploy(f, 10, "passed", "production", "1.0.1")
	_, err := Find(context.Background(), read, nil, shop, "production", t0.Add(time.Hour))
	var nf *NotFailingError
	if !errors.As(err, &nf) || nf.Failed == nil || nf.Failed.Number != failed.Number || nf.LaterPass == nil || nf.LaterPass.Number != passed.Number {
		t.Fatalf("err = %v, want not failing: #%d passed after #%d", err, passed.Number, failed.Number)
	}
	for _, want := range []string{"build #2 of acme/shop-deploy (version 1.0.1) passed", "after build #1 of acme/shop-deploy failed", "rollback"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// And a failing rebuild after the pass (the rebuild of an old build failing again) makes
	// the environment failing again: that latest failure is what a rebuild replays.
	again := deploy(f, 20, "failed", "production", "1.0.2")
	p, err := Find(context.Background(), read, nil, shop, "production", t0.Add(time.Hour))
	if err != nil || p.Build.Number != again.Number {
		t.Fatalf("after a new failure: %v, %+v", err, p)
	}
	if _, err := Do(context.Background(), write, p); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesATokenWithoutWriteBuilds(t *testing.T) {
	f, read, _ := fake(t)
	deploy(f, 0, "failed", "production", "1.0.0")
	err := CheckToken(context.Background(), read)
	var ms *MissingScopeError
	if !errors.As(err, &ms) || !strings.Contains(err.Error(), "lacks the write_builds scope") {
		t.Fatalf("CheckToken of a read-only token: %v", err)
	}
	// Past the check (a token whose scopes change in between), Buildkite's 403 names it too.
	p, err := Find(context.Background(), read, nil, shop, "production", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Do(context.Background(), read, p)
	if err == nil || !strings.Contains(err.Error(), "doesn't have the write_builds scope") || !strings.Contains(err.Error(), "needs write_builds") {
		t.Fatalf("Do with a read-only token: %v", err)
	}
	if _, ok := f.Build("acme", "shop-deploy", 2); ok {
		t.Error("a build was created without write_builds")
	}
}

func TestRefusesWhileRunningAndUnknownEnvironment(t *testing.T) {
	f, read, _ := fake(t)
	deploy(f, 0, "failed", "production", "1.0.0")
	f.AddBuild("acme", "shop-deploy", buildkite.Build{Commit: strings.Repeat("f", 40), State: buildkite.StateRunning,
		CreatedAt: buildkite.Timestamp{Time: t0.Add(5 * time.Minute)}, StartedAt: buildkite.Timestamp{Time: t0.Add(6 * time.Minute)},
		MetaData: map[string]string{"environment": "production"}})
	if _, err := Find(context.Background(), read, nil, shop, "production", t0.Add(time.Hour)); !errors.Is(err, ErrRunning) {
		t.Errorf("with a deployment running: %v", err)
	}
	if _, err := Find(context.Background(), read, nil, shop, "qa", t0.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), `no environment "qa"`) || !strings.Contains(err.Error(), "production") {
		t.Errorf("unknown environment: %v", err)
	}
}
