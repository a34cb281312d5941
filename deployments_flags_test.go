package main

import (
	"testing"

	"github.com/alecthomas/kingpin/v2"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

func TestDeploymentFlags(t *testing.T) {
	for _, tc := range []struct {
		args            []string
		file, wantKeep  bool
		wantAnnotations bool
	}{
		{args: nil},
		{args: []string{"--buildkite.read-annotations"}, wantAnnotations: true},
		{args: []string{"--deployments.keep-people-and-notes"}, wantKeep: true},
		{args: nil, file: true, wantKeep: true},
		{args: []string{"--no-deployments.keep-people-and-notes"}, file: true, wantKeep: true}, // a flag does not undo the file
	} {
		app := kingpin.New("test", "")
		var f deploymentFlags
		registerDeploymentFlags(app, &f)
		if _, err := app.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		cfg := config.Default()
		cfg.KeepPeopleAndNotes = tc.file
		got := f.apply(cfg)
		if got.KeepPeopleAndNotes != tc.wantKeep || f.readAnnotations != tc.wantAnnotations {
			t.Errorf("%v (file %v): keep %v, annotations %v; want %v, %v", tc.args, tc.file, got.KeepPeopleAndNotes, f.readAnnotations, tc.wantKeep, tc.wantAnnotations)
		}
		if tc.wantKeep && !tc.file && cfg.KeepPeopleAndNotes {
			t.Error("apply changed the loaded configuration")
		}
	}
}
