package buildkitetest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

func TestWithIgnoredFilters(t *testing.T) {
	add := func(f *Fake) {
		for i := range 5 {
			f.AddBuild("acme", "web", buildkite.Build{Branch: "main", State: buildkite.StatePassed,
				CreatedAt: at(time.Duration(i) * time.Hour), FinishedAt: at(time.Duration(i)*time.Hour + time.Minute)})
		}
	}
	q := "organizations/acme/pipelines/web/builds?finished_from=" + t0.Add(3*time.Hour).Format(time.RFC3339) +
		"&created_to=" + t0.Add(4*time.Hour).Format(time.RFC3339) + "&state[]=running&branch=main&per_page=2"

	honest := New()
	add(honest)
	if _, bs := start(t, honest).list(q); len(bs) != 0 {
		t.Errorf("a faithful fake served %d builds for a filter none matches", len(bs))
	}

	hostile := New(WithIgnoredFilters())
	add(hostile)
	a := start(t, hostile)
	resp, bs := a.list(q)
	if got := field(bs, "created_at"); len(got) != 2 || got[0] != "2026-01-10T14:00:00.000Z" {
		t.Errorf("ignoring the filters: created_at %v, want the newest two of all five", got)
	}
	// The Link header carries the query as sent, filters included.
	if next := links(resp.Header.Get("Link"))["next"]; !strings.Contains(next, "finished_from=") || !strings.Contains(next, "page=2") {
		t.Errorf("next = %q, want the query as sent", next)
	}
	// Filters not named are still applied.
	if _, bs := a.list("organizations/acme/pipelines/web/builds?branch=nope"); len(bs) != 0 {
		t.Errorf("branch filter ignored too: %d builds", len(bs))
	}

	only := New(WithIgnoredFilters("finished_from"))
	add(only)
	if _, bs := start(t, only).list("organizations/acme/pipelines/web/builds?finished_from=" + t0.Add(10*time.Hour).Format(time.RFC3339) + "&state[]=failed"); len(bs) != 0 {
		t.Errorf("WithIgnoredFilters(finished_from) ignored state too: %d builds", len(bs))
	}
	defer func() {
		if recover() == nil {
			t.Error("WithIgnoredFilters(branch) did not panic")
		}
	}()
	WithIgnoredFilters("branch")
}

func TestDateHeaderFromTheClock(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)}
	f := New(WithClock(clock.Now))
	a := start(t, f)
	resp, _ := a.get("access-token")
	if got := resp.Header.Get("Date"); got != "Mon, 06 May 2030 07:08:09 GMT" {
		t.Errorf("Date = %q, want the fake's clock", got)
	}
	resp, _ = a.with("bkua_wrong").get("access-token") // errors carry it too
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Date") == "" {
		t.Errorf("401: status %d, Date %q", resp.StatusCode, resp.Header.Get("Date"))
	}
}

func TestTrickleFault(t *testing.T) {
	f := New()
	a := start(t, f)
	f.InjectFault(Fault{Trickle: 50 * time.Millisecond})
	req, _ := http.NewRequest(http.MethodGet, a.base+"access-token", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	start := time.Now()
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(resp.Body, buf, 4)
	if took := time.Since(start); n < 4 || took < 150*time.Millisecond {
		t.Errorf("read %d bytes in %v, want one byte every 50ms", n, took)
	}
	if !strings.HasPrefix(string(buf[:n]), `{"uu`) {
		t.Errorf("trickled %q, want the start of the answer", buf[:n])
	}
}
