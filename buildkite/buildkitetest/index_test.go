package buildkitetest

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// TestIndexesAgainstNaiveScan mutates builds at random (out-of-order adds, finishes, retries,
// moved created_at) and checks every listing against a plain scan of all builds.
func TestIndexesAgainstNaiveScan(t *testing.T) {
	f := New(WithRateLimits(false), WithDeepPageLimit(0))
	f.SetToken(testToken, "read_builds")
	c := &http.Client{Transport: f.Transport()}
	rng := rand.New(rand.NewPCG(1, 2))
	type ref struct {
		pipe string
		num  int
		k    int // add order, the tie-breaker
	}
	var refs []ref
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

	list := func(query string) []string {
		out := []string{}
		next := InProcessBaseURL + "organizations/acme/builds?per_page=100&exclude_pipeline=true&exclude_jobs=true&" + query
		for next != "" {
			req, _ := http.NewRequest(http.MethodGet, next, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %s", next, resp.StatusCode, body)
			}
			var bs []map[string]any
			if err := json.Unmarshal(body, &bs); err != nil {
				t.Fatal(err)
			}
			out = append(out, field(bs, "message")...)
			next = links(resp.Header.Get("Link"))["next"]
		}
		return out
	}
	type query struct {
		createdFrom, createdTo, finishedFrom int // seconds; -1 unset
		states                               []string
	}
	var snap []buildkite.Build // refs' builds as of the current check
	naive := func(qq query) []string {
		type hit struct {
			b buildkite.Build
			k int
		}
		var hits []hit
		for i, r := range refs {
			b := snap[i]
			if qq.createdFrom >= 0 && b.CreatedAt.Before(sec(qq.createdFrom)) ||
				qq.createdTo >= 0 && !b.CreatedAt.Before(sec(qq.createdTo)) ||
				qq.finishedFrom >= 0 && (b.FinishedAt.IsZero() || b.FinishedAt.Before(sec(qq.finishedFrom))) {
				continue
			}
			if qq.states != nil {
				st := b.State
				if b.Blocked {
					st = "blocked"
				}
				ok := false
				for _, s := range qq.states {
					ok = ok || s == st || s == "finished" && slices.Contains([]string{"passed", "failed", "blocked", "canceled"}, st)
				}
				if !ok {
					continue
				}
			}
			hits = append(hits, hit{b, r.k})
		}
		slices.SortFunc(hits, func(a, b hit) int {
			if c := b.b.CreatedAt.Compare(a.b.CreatedAt.Time); c != 0 {
				return c
			}
			return b.k - a.k
		})
		out := []string{}
		for _, h := range hits {
			out = append(out, h.b.Message)
		}
		return out
	}
	check := func(round, queries int) {
		snap = snap[:0]
		for _, r := range refs {
			b, _ := f.Build("acme", r.pipe, r.num)
			snap = append(snap, b)
		}
		for range queries {
			qq := query{createdFrom: -1, createdTo: -1, finishedFrom: -1}
			v := url.Values{}
			if rng.IntN(2) == 0 {
				qq.createdFrom = rng.IntN(1200)
				v.Set("created_from", sec(qq.createdFrom).Format(time.RFC3339))
			}
			if rng.IntN(3) == 0 {
				qq.createdTo = rng.IntN(1200)
				v.Set("created_to", sec(qq.createdTo).Format(time.RFC3339))
			}
			if rng.IntN(2) == 0 {
				qq.finishedFrom = rng.IntN(2400)
				v.Set("finished_from", sec(qq.finishedFrom).Format(time.RFC3339))
			}
			switch rng.IntN(4) {
			case 0:
				qq.states = []string{"running", "scheduled"}
			case 1:
				qq.states = []string{"finished"}
			case 2:
				qq.states = []string{"blocked"}
			}
			for _, s := range qq.states {
				v.Add("state[]", s)
			}
			if diff := cmp.Diff(naive(qq), list(v.Encode())); diff != "" {
				t.Fatalf("round %d, query %s (-naive +fake):\n%s", round, v.Encode(), diff)
			}
		}
	}

	// Bulk rounds add out of order, so indexes are re-sorted; then short rounds without adds
	// check the in-place updates between two queries.
	for round := range 44 {
		ops, adds, queries := 300, 5, 12
		if round >= 4 {
			ops, adds, queries = 3, 0, 4
		}
		for range ops {
			switch op := rng.IntN(10); {
			case op < adds || len(refs) == 0:
				p := "p" + strconv.Itoa(rng.IntN(5))
				b := buildkite.Build{Message: fmt.Sprintf("m%d", len(refs)), CreatedAt: buildkite.Timestamp{Time: sec(rng.IntN(1000))}}
				switch rng.IntN(4) {
				case 0:
					b.State = "running"
				case 1:
					b.State, b.Blocked = "passed", true
				default:
					b.State = []string{"passed", "failed", "canceled"}[rng.IntN(3)]
					b.FinishedAt = buildkite.Timestamp{Time: b.CreatedAt.Add(time.Duration(rng.IntN(1000)) * time.Second)}
				}
				got := f.AddBuild("acme", p, b)
				refs = append(refs, ref{p, got.Number, len(refs)})
			case op < 7:
				r := refs[rng.IntN(len(refs))]
				_ = f.FinishBuild("acme", r.pipe, r.num, "failed", sec(rng.IntN(2400)))
			case op < 9:
				r := refs[rng.IntN(len(refs))]
				_ = f.RetryBuild("acme", r.pipe, r.num) // fails on unfinished builds, which is fine
			default:
				r := refs[rng.IntN(len(refs))]
				if err := f.UpdateBuild("acme", r.pipe, r.num, func(b *buildkite.Build) {
					b.CreatedAt = buildkite.Timestamp{Time: sec(rng.IntN(1000))}
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		check(round, queries)
	}
}
