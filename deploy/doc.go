// Package deploy holds the tests of the Kubernetes deployment: the Helm chart under helm/, the
// plain manifests under kubernetes/ generated from it, and the monitoring mixin under ../mixin.
// It is a module of its own so that Helm's, Kubernetes' and go-jsonnet's dependencies stay out of
// the exporter's go.mod; run it with `make deploy-test` (go -C deploy test ./...).
package deploy
