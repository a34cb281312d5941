package status

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/fixture.json from the handler's output")

// TestJSONGolden pins the schema: the fixture's document is testdata/fixture.json (go test
// -run TestJSONGolden -update rewrites it; review the diff as a schema change).
func TestJSONGolden(t *testing.T) {
	res, body := get(t, fixtureHandler(newFixtureSource()), http.MethodGet, "/status?format=json")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	golden := filepath.Join("testdata", "fixture.json")
	if *update {
		var out bytes.Buffer // indented, for the reviewer of a schema change
		if err := json.Indent(&out, []byte(body), "", "  "); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var got, exp any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &exp); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(exp, got); d != "" {
		t.Errorf("JSON differs from %s (-want +got):\n%s", golden, d)
	}
}

func TestJSONSchemaValues(t *testing.T) {
	p := getPage(t, fixtureHandler(newFixtureSource()), "")
	if p.SchemaVersion != 1 || !p.GeneratedAt.Equal(fixtureNow) {
		t.Errorf("schema_version %d, generated_at %v", p.SchemaVersion, p.GeneratedAt)
	}
	var shop, evil *Component
	for _, c := range p.Components {
		switch c.Label {
		case "shop":
			shop = c
		case hostileLabel:
			evil = c
		}
	}
	want := []Pipeline{{Name: "acme/shop-deploy", State: "warning", Problems: []PipelineProblem{{
		Pipeline: "acme/shop-deploy", Reason: "no_environment_metadata", Severity: "warning", Message: shopProblem, Since: fixtureNow.Add(-72 * time.Hour),
	}}}}
	if d := cmp.Diff(want, shop.Pipelines); d != "" {
		t.Errorf("shop's pipelines (-want +got):\n%s", d)
	}
	if u := evil.Environments[0].Deployed.WebURL; u != "" {
		t.Errorf("a javascript: web_url reached the JSON: %q", u)
	}
}
