package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

// deploymentFlags are the opt-in readings of a pipeline's deployment conventions beyond its
// meta-data: deployment annotations (a request per finished build) and the people and release
// notes of a deployment (personal data).
type deploymentFlags struct {
	readAnnotations    bool
	keepPeopleAndNotes bool
}

func registerDeploymentFlags(app *kingpin.Application, f *deploymentFlags) {
	app.Flag("buildkite.read-annotations", "Read the annotations of every finished build of a linked pipeline (one request each, live builds only, not the backfill): a deployment-<environment> context names the build's environment when its meta-data does not, and its success/error style cross-checks the outcome.").
		Default("false").BoolVar(&f.readAnnotations)
	app.Flag("deployments.keep-people-and-notes", "Keep who deployed (meta-data deployed_by, else the build creator's name) and the block step's release-notes field (up to 4 KiB) with each deployment, shown on /status and in the report, never as labels. User names are personal data; also the config key keep_people_and_notes.").
		Default("false").BoolVar(&f.keepPeopleAndNotes)
}

// apply returns cfg with the flags that override it: --deployments.keep-people-and-notes turns
// keep_people_and_notes on (a flag cannot turn off what the file asks for). cfg is not changed.
func (f *deploymentFlags) apply(cfg *config.Config) *config.Config {
	if !f.keepPeopleAndNotes || cfg.KeepPeopleAndNotes {
		return cfg
	}
	c := *cfg
	c.KeepPeopleAndNotes = true
	return &c
}
