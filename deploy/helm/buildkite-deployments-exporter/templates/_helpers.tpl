{{/* Chart name, as the prometheus-community charts spell these helpers. */}}
{{- define "bkde.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release alone when it already contains the chart name. */}}
{{- define "bkde.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bkde.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bkde.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bkde.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bkde.labels" -}}
helm.sh/chart: {{ include "bkde.chart" . }}
{{ include "bkde.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "bkde.name" . }}
{{- end }}

{{- define "bkde.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bkde.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bkde.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The Secret holding the Buildkite token: an existing one, else <fullname>-token, which the chart
creates from buildkite.token.value or, without a value, expects you to create (kubectl create
secret generic <fullname>-token --from-file=token=…): the pod waits for it.
*/}}
{{- define "bkde.tokenSecretName" -}}
{{- if .Shard.token }}
{{- required "shards[].token.existingSecret: each shard reads its own token from an existing Secret" .Shard.token.existingSecret }}
{{- else }}
{{- default (printf "%s-token" (include "bkde.fullname" .)) .Values.buildkite.token.existingSecret }}
{{- end }}
{{- end }}

{{- define "bkde.tokenKey" -}}
{{- if .Shard.token }}{{ default "token" (get .Shard.token "key") }}{{ else }}{{ .Values.buildkite.token.key }}{{ end }}
{{- end }}

{{/*
Shards (values.shards): one StatefulSet each. The templates set .Shard to the shard being
rendered (a dict with an empty name when there are no shards).
*/}}
{{- define "bkde.shardFullname" -}}
{{- if .Shard.name }}
{{- printf "%s-%s" (include "bkde.fullname" .) .Shard.name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- include "bkde.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The StatefulSet's selector: the chart's, plus the shard's name. */}}
{{- define "bkde.shardSelectorLabels" -}}
{{ include "bkde.selectorLabels" . }}
{{- if .Shard.name }}
buildkite-deployments-exporter/shard: {{ .Shard.name }}
{{- end }}
{{- end }}

{{/*
Tokens of one Buildkite user share that user's 50 requests a minute: shards naming the same
user split buildkite.requestsPerMinute evenly.
*/}}
{{- define "bkde.requestsPerMinute" -}}
{{- $rpm := .Values.buildkite.requestsPerMinute }}
{{- if .Shard.user }}
{{- $n := 0 }}
{{- range .Values.shards }}
{{- if eq (toString (get . "user")) $.Shard.user }}{{ $n = add1 $n }}{{ end }}
{{- end }}
{{- divf $rpm $n | printf "%g" }}
{{- else }}
{{- $rpm }}
{{- end }}
{{- end }}

{{- define "bkde.webhookSecretName" -}}
{{- default (printf "%s-webhook-token" (include "bkde.fullname" .)) .Values.webhook.token.existingSecret }}
{{- end }}

{{- define "bkde.catalogConfigMapName" -}}
{{- default (printf "%s-catalog" (include "bkde.fullname" .)) .Values.catalog.existingConfigMap }}
{{- end }}

{{/*
Catalog files are mounted unless the catalog comes from Backstage alone: with neither files nor
existingConfigMap nor backstageURL, the pod mounts <fullname>-catalog, which you create
(kubectl create configmap <fullname>-catalog --from-file=catalog/) and the pod waits for.
*/}}
{{- define "bkde.hasCatalogFiles" -}}
{{- if or .Values.catalog.files .Values.catalog.existingConfigMap (not .Values.catalog.backstageURL) }}true{{ end }}
{{- end }}

{{/*
The exporter's flags, shared by the exporter and the check --offline init container so that the
check sees exactly what the exporter will. Secrets are only ever files.
*/}}
{{- define "bkde.args" -}}
- --buildkite.token-file=/etc/buildkite-deployments-exporter/token/{{ include "bkde.tokenKey" . }}
{{- with .Values.buildkite.apiURL }}
- --buildkite.api-url={{ . }}
{{- end }}
- --buildkite.requests-per-minute={{ include "bkde.requestsPerMinute" . }}
{{- range .Shard.organizations }}
- --buildkite.organization={{ . }}
{{- end }}
{{- if include "bkde.hasCatalogFiles" . }}
- --catalog.file=/etc/buildkite-deployments-exporter/catalog
{{- end }}
{{- with .Values.catalog.backstageURL }}
- --catalog.backstage-url={{ . }}
{{- end }}
{{- if .Values.catalog.backstageToken.existingSecret }}
- --catalog.backstage-token-file=/etc/buildkite-deployments-exporter/backstage-token/{{ .Values.catalog.backstageToken.key }}
{{- end }}
- --catalog.refresh-interval={{ .Values.catalog.refreshInterval }}
{{- if .Values.config }}
- --config.file=/etc/buildkite-deployments-exporter/config/config.yml
{{- end }}
- --poll.interval={{ .Values.pollInterval }}
- --history.backfill={{ .Values.historyBackfill }}
- --storage.path=/data
- --storage.retention={{ .Values.storageRetention }}
- --log.level={{ .Values.log.level }}
- --log.format={{ .Values.log.format }}
{{- end }}

{{/* The volume mounts of the exporter and the init container. */}}
{{- define "bkde.volumeMounts" -}}
- name: token
  mountPath: /etc/buildkite-deployments-exporter/token
  readOnly: true
{{- if include "bkde.hasCatalogFiles" . }}
- name: catalog
  mountPath: /etc/buildkite-deployments-exporter/catalog
  readOnly: true
{{- end }}
{{- if .Values.catalog.backstageToken.existingSecret }}
- name: backstage-token
  mountPath: /etc/buildkite-deployments-exporter/backstage-token
  readOnly: true
{{- end }}
{{- if .Values.config }}
- name: config
  mountPath: /etc/buildkite-deployments-exporter/config
  readOnly: true
{{- end }}
{{- if .Values.webhook.enabled }}
- name: webhook-token
  mountPath: /etc/buildkite-deployments-exporter/webhook-token
  readOnly: true
{{- end }}
- name: data
  mountPath: /data
{{- end }}

{{/*
Refuse to render a PrometheusRule whose bundled rules (default thresholds) would disagree with
config: the thresholds of alerts.* and slos.duration_threshold / slos.window live in the rules.
*/}}
{{- define "bkde.rules" -}}
{{- if .Values.prometheusRule.rules }}
{{- .Values.prometheusRule.rules }}
{{- else }}
{{- $slos := default dict (get .Values.config "slos") }}
{{- if or (hasKey .Values.config "alerts") (hasKey $slos "duration_threshold") (hasKey $slos "window") }}
{{- fail "prometheusRule: config sets alert thresholds (alerts.*, slos.duration_threshold or slos.window), so the bundled rules would be stale; pass what `buildkite_deployments_exporter rules --config.file=<this config>` prints: --set-file prometheusRule.rules=rules.yml" }}
{{- end }}
{{- .Files.Get "files/rules.yml" }}
{{- end }}
{{- end }}
