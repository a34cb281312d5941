package status

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHTML(t *testing.T) {
	res, body := get(t, fixtureHandler(newFixtureSource()), http.MethodGet, "/status")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		// every component, the pending one too
		">api</a>", ">frontend/web</a>", ">shop</a>", ">worker</a>", ">newsvc</a>", "pending: not polled yet",
		// pipelines, their state and the problem with its fix
		"acme/api-deploy-staging", `<td class="warning">warning</td>`, "<code>no_environment_metadata</code>",
		escape(shopProblem), escape(workerProblem), `<td class="ok">ok</td>`,
		// last deployments: version, age, state, link
		"v1.4.2", "3h 0m ago (2026-11-25 09:00:00 UTC)", `<span class="failing">failing</span>`,
		`<a href="https://buildkite.com/acme/api-deploy-prod/builds/142">acme/api-deploy-prod #142</a>`, "aaaaaaaaaaaa",
		"1 running, 1 awaiting approval",
		// catalog problems with file:line and reason
		"<code>" + brokenYAML + "</code>", "<code>malformed_yaml</code>", brokenYAMLText,
		// organizations
		"180 of 200", "3 of 10 listings read (one per pipeline, or one for the organization), about 240 requests left, about 8m 0s to go",
		"globex is backfilling", "like a burst of deployments", "401 Unauthorized", "in 20s (2026-11-25 12:00:20 UTC)",
		// unowned pipeline problems, unknown environments
		"acme/sandbox", "<code>qa-eu</code>",
		"by buildkite_deployments_exporter 0.2.0",
		// the latest deployment's people and release notes (keep_people_and_notes)
		" by Ada Lovelace</td>", "<summary>Release notes</summary><pre class=\"notes\">* Faster checkout\n* Fixed the 500 on /cart</pre>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// escape is what html/template makes of plain text.
func escape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "+", "&#43;")
	return r.Replace(s)
}

func TestHTMLEscapesHostileValues(t *testing.T) {
	_, body := get(t, fixtureHandler(newFixtureSource()), http.MethodGet, "/status")
	for _, bad := range []string{"<script", "javascript:", "<b>evil"} {
		if strings.Contains(strings.ToLower(body), bad) {
			t.Errorf("page contains %q unescaped", bad)
		}
	}
	for _, want := range []string{escape(hostileVersion), "evil&lt;script&gt;", "team-&lt;b&gt;evil&lt;/b&gt;",
		// the build is named, but not linked
		"<td>acme/evil #7<details>",
		// who deployed and the release notes, escaped
		" by " + escape(hostileVersion) + "</td>", `<pre class="notes">` + escape("<script>alert('notes')</script>") + "</pre>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 45 * time.Second: "45s", 12*time.Minute + 3*time.Second: "12m 3s",
		3*time.Hour + 5*time.Minute: "3h 5m", 98 * time.Hour: "4d 2h",
	} {
		if got := string(appendDuration(nil, d)); got != want {
			t.Errorf("appendDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestFragmentsReused checks that a new snapshot re-renders only the components that changed.
func TestFragmentsReused(t *testing.T) {
	src := newFixtureSource()
	h := fixtureHandler(src).(*handler)
	get(t, h, http.MethodGet, "/status")
	before := h.frags.byKey
	next := fixtureSnapshot()
	next.Components[0].Environments[0].Deployed = deployed("v1.4.3", 'f', time.Minute, "acme/api-deploy-prod", 143)
	src.snap.Store(next)
	_, body := get(t, h, http.MethodGet, "/status")
	if !strings.Contains(body, "v1.4.3") || strings.Contains(body, "v1.4.2") {
		t.Fatal("the page does not show the new deployment")
	}
	m, _ := h.current()
	reused := 0
	for _, f := range m.frags {
		for _, old := range before {
			if f == old {
				reused++
			}
		}
	}
	if want := len(m.components) - 1; reused != want {
		t.Errorf("%d fragments reused, want %d (all but api's)", reused, want)
	}
}

// TestSlotMarkersCannotBeForged puts a slot marker into every value a component shows: escaped,
// it stays text and never becomes a time.
func TestSlotMarkersCannotBeForged(t *testing.T) {
	const forged = slotPrefix + "w:0-->"
	src := newFixtureSource()
	snap := fixtureSnapshot()
	c := &snap.Components[0]
	c.Owner, c.System = forged, forged
	c.Environments[0].Deployed.Version = forged
	c.Environments[0].Deployed.Commit = forged
	snap.PipelineProblems[1].Message = forged
	src.snap.Store(snap)
	_, body := get(t, fixtureHandler(src), http.MethodGet, "/status")
	if strings.Contains(body, "1970-01-01") || strings.Contains(body, forged) {
		t.Error("a value became a slot marker")
	}
	if !strings.Contains(body, "&lt;!--status-slot:w:0--&gt;") {
		t.Error("the forged marker is not shown as text")
	}
}
