package main

import (
	"slices"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
)

// placeholderBadgesURL is --badges.url's default, which the backstage command warns about.
const placeholderBadgesURL = "https://buildkite-deployments-exporter.example.com"

// slugEnvironments are the environments a component's badge lines are printed for, as far as
// the catalog tells without the API: the one each pipeline's slug names, else the default
// environment (what the exporter assumes for a pipeline before its first record). Environments
// that only build meta-data names need a line added by hand.
func slugEnvironments(cfg *config.Config) func(backstage.Component) []string {
	cls := deployment.NewClassifier(cfg)
	return func(c backstage.Component) []string {
		var envs []string
		for _, p := range c.Pipelines {
			env := cls.SlugEnvironment(p.Pipeline)
			if env == "" {
				env = cfg.DefaultEnvironment
			}
			envs = append(envs, cfg.NormalizeEnvironment(env))
		}
		slices.Sort(envs)
		return slices.Compact(envs)
	}
}
