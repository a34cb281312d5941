package alerts

import (
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite buildkite-deployments.rules.yml from the template's defaults")

// The committed rule file is the render of DefaultParams: it can never drift from the template.
func TestCommittedRulesAreDefaultRender(t *testing.T) {
	got, err := Render(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	const path = "buildkite-deployments.rules.yml"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./alerts -run TestCommittedRulesAreDefaultRender -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from Render(DefaultParams()) (-committed +rendered); run go test ./alerts -run TestCommittedRulesAreDefaultRender -update:\n%s", path, diff)
	}
}
