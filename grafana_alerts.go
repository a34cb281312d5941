package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/alerts"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

// grafanaAlertsFlags are the flags of the grafana-alerts command.
type grafanaAlertsFlags struct {
	datasourceUID string
	components    []string
	owners        []string
}

func registerGrafanaAlerts(app *kingpin.Application) (*kingpin.CmdClause, *grafanaAlertsFlags) {
	g := &grafanaAlertsFlags{}
	cmd := app.Command("grafana-alerts", "Print a Grafana alerting provisioning file: the component alerts (failing, failed, stuck, success and duration budget burn) as Grafana-managed rules, one per alert and catalog component, labelled component and owner for the Backstage Grafana plugin's alerts card. Thresholds from --config.file, as the rules command.")
	cmd.Flag("grafana.datasource-uid", "Uid of the Grafana Prometheus data source that scrapes the exporter (required).").
		PlaceHolder("UID").StringVar(&g.datasourceUID)
	cmd.Flag("component", "Only this component (its component label: name, or namespace/name). Repeatable; with --owner, a component matching either is kept.").
		PlaceHolder("NAME").StringsVar(&g.components)
	cmd.Flag("owner", "Only the components of this owner (spec.owner as written in the catalog). Repeatable.").
		PlaceHolder("OWNER").StringsVar(&g.owners)
	return cmd, g
}

// selectGrafanaComponents keeps the components named by --component or owned by an --owner; all
// without either. It reports the selectors that matched nothing, which are typing mistakes.
func selectGrafanaComponents(comps []backstage.Component, g *grafanaAlertsFlags) ([]alerts.GrafanaComponent, []string) {
	var out []alerts.GrafanaComponent
	usedComp, usedOwner := map[string]bool{}, map[string]bool{}
	for _, c := range comps {
		keep := len(g.components) == 0 && len(g.owners) == 0
		if slices.Contains(g.components, c.Label) {
			keep, usedComp[c.Label] = true, true
		}
		if slices.Contains(g.owners, c.Owner) {
			keep, usedOwner[c.Owner] = true, true
		}
		if keep {
			out = append(out, alerts.GrafanaComponent{Label: c.Label, Owner: c.Owner})
		}
	}
	var unmatched []string
	for _, c := range g.components {
		if !usedComp[c] {
			unmatched = append(unmatched, "--component="+c)
		}
	}
	for _, o := range g.owners {
		if !usedOwner[o] {
			unmatched = append(unmatched, "--owner="+o)
		}
	}
	return out, unmatched
}

func printGrafanaAlerts(cfg *config.Config, f *flags, g *grafanaAlertsFlags, logger log.Logger) int {
	if g.datasourceUID == "" {
		fmt.Fprintf(os.Stderr, "%s: grafana-alerts needs --grafana.datasource-uid: the uid of the Prometheus data source that scrapes the exporter (Grafana → Connections → Data sources → that data source: the last part of its URL)\n", exporterName)
		return 2
	}
	res, ok := catalogToPrint(f, logger)
	if !ok {
		return 1
	}
	comps, unmatched := selectGrafanaComponents(res.Components, g)
	for _, u := range unmatched {
		fmt.Fprintf(os.Stderr, "warning: %s matches no component of the catalog\n", u)
	}
	out, err := alerts.RenderGrafana(alerts.ParamsFromConfig(cfg, f.runbookURL), alerts.GrafanaOptions{DatasourceUID: g.datasourceUID}, comps)
	if err != nil {
		level.Error(logger).Log("msg", "Cannot render the Grafana alert rules", "err", err)
		return 1
	}
	os.Stdout.Write(out)
	if len(res.Problems) > 0 || len(unmatched) > 0 {
		return 1
	}
	return 0
}
