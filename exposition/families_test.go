package exposition

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// additions are the families added to the metric contract since testdata/legacy.prom, each
// with its CHANGELOG line.
var additions = map[string]bool{
	"buildkite_exporter_exemplars_dropped_total": true, // exemplars (issue 14)
}

// TestLegacyContract checks the families against testdata/legacy.prom, what the exporter
// served before this package: same names, HELP, types and label names, and no other family
// than the additions.
func TestLegacyContract(t *testing.T) {
	f, err := os.Open("testdata/legacy.prom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	legacy, err := parser.TextToMetricFamilies(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(legacy)+len(additions) != len(families) {
		t.Errorf("%d legacy families and %d additions, %d families", len(legacy), len(additions), len(families))
	}
	for _, fam := range families {
		if additions[fam.name] {
			continue
		}
		mf := legacy[fam.name]
		if mf == nil {
			t.Errorf("%s: not a legacy family", fam.name)
			continue
		}
		if mf.GetHelp() != fam.help {
			t.Errorf("%s: help %q, legacy %q", fam.name, fam.help, mf.GetHelp())
		}
		if mf.GetType() != fam.typ {
			t.Errorf("%s: type %v, legacy %v", fam.name, fam.typ, mf.GetType())
		}
		var names []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			names = append(names, lp.GetName())
		}
		if !slices.Equal(names, fam.labels) {
			t.Errorf("%s: labels %v, legacy %v", fam.name, fam.labels, names)
		}
	}
}

// TestFamilyTable checks what the encoder relies on: families in name order (Gather's), label
// names sorted (client_golang's label-pair order) and no more than a series holds.
func TestFamilyTable(t *testing.T) {
	if !slices.IsSortedFunc(families, func(a, b *family) int { return strings.Compare(a.name, b.name) }) {
		t.Error("families are not sorted by name")
	}
	for _, f := range families {
		if !slices.IsSorted(f.labels) {
			t.Errorf("%s: labels %v not sorted", f.name, f.labels)
		}
		if len(f.labels) > maxLabels {
			t.Errorf("%s: %d labels, more than maxLabels", f.name, len(f.labels))
		}
		if !strings.HasSuffix(f.help, refreshed) {
			t.Errorf("%s: help does not end with %q", f.name, refreshed)
		}
	}
	if len(familyNames) != len(families) {
		t.Error("family names are not unique")
	}
}
