package deployment

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

func TestClassifierTargets(t *testing.T) {
	tag := "v1"
	cls := Classifier{config.Default()}
	for _, tc := range []struct {
		name string
		slug string
		md   map[string]string
		tag  *string
		want []target
	}{
		{"meta-data", "x", map[string]string{"environment": "Staging"}, nil, []target{{Environment: "staging"}}},
		{"meta-data alias", "x", map[string]string{"environment": " PRD "}, nil, []target{{Environment: "production"}}},
		{"meta-data unknown", "x", map[string]string{"environment": "QA-1"}, nil, []target{{Environment: "qa-1", Unknown: true}}},
		{"meta-data beats deployed keys", "x", map[string]string{"environment": "dev", "a:prod:deployed": "true"}, nil, []target{{Environment: "development"}}},
		{"empty meta-data falls through", "svc-deploy-stg", map[string]string{"environment": "  "}, nil, []target{{Environment: "staging", Fallback: true}}},
		{"deployed keys", "x", map[string]string{"b:stg:deployed": "TRUE", "a:prod:deployed": "yes", "c:dev:deployed": "false", "a:prod:version": "2"},
			nil, []target{{Environment: "production", Version: "2"}, {Environment: "staging"}}},
		{"malformed deployed keys ignored", "x", map[string]string{"prod:deployed": "true", "a::deployed": "true", "a:b:c:deployed": "true"},
			nil, []target{{Environment: "production", Fallback: true}}},
		{"slug last token first", "dev-tools-deploy-prod", nil, nil, []target{{Environment: "production", Fallback: true}}},
		{"slug underscore", "svc_live", nil, &tag, []target{{Environment: "production", Version: "v1", Fallback: true}}},
		{"slug without environment: default", "payments", nil, &tag, []target{{Environment: "production", Version: "v1", Fallback: true}}},
		{"slug substring is not a token", "production-like-thing", nil, nil, []target{{Environment: "production", Fallback: true}}},
		{"devtools is not dev", "devtools", nil, nil, []target{{Environment: "production", Fallback: true}}},
		{"version precedence", "x", map[string]string{"environment": "prod", "version": "1", "prod:version": "2", "production:version": "3"},
			&tag, []target{{Environment: "production", Version: "2"}}},
		{"normalised env version key", "x", map[string]string{"environment": "prod", "version": "1", "production:version": "3"},
			nil, []target{{Environment: "production", Version: "3"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &buildkite.Build{MetaData: tc.md, Tag: tc.tag}
			if diff := cmp.Diff(tc.want, cls.targets(b, tc.slug)); diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOutcomeState(t *testing.T) {
	for _, tc := range []struct {
		state   string
		blocked bool
		want    string
	}{
		{"passed", false, "passed"}, {"failed", false, "failed"}, {"canceled", false, "canceled"},
		{"passed", true, ""}, {"failed", true, ""}, {"skipped", false, ""}, {"not_run", false, ""},
		{"running", false, ""}, {"failing", false, ""}, {"canceling", false, ""}, {"scheduled", false, ""},
	} {
		got, ok := outcomeState(&buildkite.Build{State: tc.state, Blocked: tc.blocked})
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("outcomeState(%s, blocked=%v) = %q, %v; want %q", tc.state, tc.blocked, got, ok, tc.want)
		}
	}
}

func TestMetaDataEnvironments(t *testing.T) {
	for _, tc := range []struct {
		md   map[string]string
		want []string
	}{
		{nil, nil},
		{map[string]string{"environment": " Prod-East "}, []string{"Prod-East"}},
		{map[string]string{"environment": "stg", "a:prod:deployed": "true"}, []string{"stg"}},
		{map[string]string{"b:stg:deployed": "yes", "a:prod:deployed": "1", "c:dev:deployed": "false", "x:deployed": "true"}, []string{"prod", "stg"}},
	} {
		if diff := cmp.Diff(tc.want, MetaDataEnvironments(tc.md)); diff != "" {
			t.Errorf("MetaDataEnvironments(%v) (-want +got):\n%s", tc.md, diff)
		}
	}
}
