// The buildkite_deployments_exporter monitoring mixin: the exporter's recording rules, alerts and
// Grafana dashboards, in the layout kube-prometheus and mixtool expect. Override _config to tune
// selectors and thresholds (config.libsonnet lists every key with its default); see README.md
// for what _config cannot change.
(import 'config.libsonnet') +
(import 'rules.libsonnet') +
(import 'dashboards.libsonnet')
