// Package dashboards holds the Grafana dashboards of the Buildkite deployments exporter, written
// as Go with the Grafana foundation SDK, the JSON generated from them (committed next to this
// file so that users can import it without Go), the provisioning examples, and the Backstage
// annotations that point a component page at its dashboard.
//
// Regenerate the JSON after changing a dashboard:
//
//	go generate ./dashboards
//lint:file-ignore SA1019 Grafana 11 reads only the v1 dashboard model; dashboardv2 (which the SDK now prefers) is Grafana 12 only.

package dashboards

//go:generate go run ./generate -out .

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// board is one dashboard and the file its JSON goes to.
type board struct {
	file  string
	build func() *dashboard.DashboardBuilder
}

var boards = []board{
	{"overview.json", overview},
	{"component.json", component},
	{"slo.json", slo},
	{"exporter-health.json", health},
}

// Generate renders every dashboard: file name → indented JSON, ending with a newline. The output
// depends on nothing but this package's code, so the committed files can be diffed against it.
func Generate() (map[string][]byte, error) {
	out := make(map[string][]byte, len(boards))
	for _, b := range boards {
		d, err := b.build().Build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", b.file, err)
		}
		finish(&d)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		// Keep <, > and & readable in PromQL (a > 0) and URLs (a&b).
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", b.file, err)
		}
		out[b.file] = buf.Bytes()
	}
	return out, nil
}

// finish sets what the builders leave to Grafana, so that the JSON is stable and imports into
// Grafana 11 as well as 12: panel ids in layout order, the datasource variable on every panel, the classic schema version, and no link
// placement (a Grafana 12 field that would move the dropdown into the controls menu).
func finish(d *dashboard.Dashboard) {
	d.SchemaVersion = schemaVersion
	var id uint32
	for _, p := range d.Panels {
		id++
		switch {
		case p.Panel != nil:
			p.Panel.Id = ptr(id)
			p.Panel.Datasource = &datasource
		case p.RowPanel != nil:
			p.RowPanel.Id = id
			for i := range p.RowPanel.Panels {
				id++
				p.RowPanel.Panels[i].Id = ptr(id)
				p.RowPanel.Panels[i].Datasource = &datasource
			}
		}
	}
	for i := range d.Links {
		d.Links[i].Placement = nil
	}
}
