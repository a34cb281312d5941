package deploy

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

const testToken = "bkua_0123456789abcdef0123456789abcdef01234567"

// shopCatalog is a catalog-info.yaml the exporter accepts.
const shopCatalog = `apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: shop
  annotations:
    buildkite.com/pipeline-slug: acme/shop-deploy
spec:
  type: service
  owner: team-shop
  lifecycle: production
`

// allOptional enables every optional object of the chart.
func allOptional() map[string]any {
	return map[string]any{
		"buildkite": map[string]any{"token": map[string]any{"value": testToken}},
		"catalog":   map[string]any{"files": map[string]any{"shop.yaml": shopCatalog}},
		// Objectives and environments only: they are data, the bundled rules stay exact.
		"config": map[string]any{
			"default_environment": "production",
			"environment_aliases": map[string]any{"uat": "staging"},
			"slos": map[string]any{"objectives": map[string]any{
				"production": map[string]any{"success": 0.99, "duration": 0.9},
			}},
		},
		"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"prometheusRule": map[string]any{"enabled": true},
		"dashboards":     map[string]any{"enabled": true, "annotations": map[string]any{"grafana_folder": "Buildkite"}},
		"webhook": map[string]any{
			"enabled": true,
			"token":   map[string]any{"value": "webhook-secret-0123456789"},
			"ingress": map[string]any{"enabled": true, "className": "nginx", "host": "hooks.example.com"},
		},
	}
}

func TestChartVersionIsExporterVersion(t *testing.T) {
	v, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	ch := loadChart(t)
	want := strings.TrimSpace(string(v))
	if ch.Metadata.Version != want || ch.Metadata.AppVersion != want {
		t.Errorf("Chart.yaml version %s, appVersion %s; VERSION is %s: release them together", ch.Metadata.Version, ch.Metadata.AppVersion, want)
	}
}

func TestLint(t *testing.T) {
	shards := map[string]any{"shards": []any{
		map[string]any{"name": "acme", "organizations": []any{"acme"}, "token": map[string]any{"existingSecret": "bk-acme"}, "user": "ci-bot"},
		map[string]any{"name": "globex", "organizations": []any{"globex"}, "token": map[string]any{"existingSecret": "bk-globex"}, "user": "ci-bot"},
	}}
	for name, vals := range map[string]map[string]any{"defaults": nil, "all optional objects": allOptional(), "shards": shards} {
		t.Run(name, func(t *testing.T) {
			linter := lint.AllWithKubeVersionAndSchemaValidation(chartDir, vals, releaseNamespace, nil, false)
			for _, m := range linter.Messages {
				// INFO is advice (an icon); WARNING and ERROR fail, as `helm lint --strict` does.
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

func TestRenderDefaults(t *testing.T) {
	objs := mustRender(t, nil)
	want := []string{
		"Service/buildkite-deployments-exporter",
		"Service/buildkite-deployments-exporter-headless",
		"ServiceAccount/buildkite-deployments-exporter",
		"StatefulSet/buildkite-deployments-exporter",
	}
	if diff := cmp.Diff(want, kinds(objs)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	sts := find[*appsv1.StatefulSet](t, objs, "StatefulSet", "buildkite-deployments-exporter")
	spec := sts.Spec.Template.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 1 {
		t.Fatalf("containers %d, init containers %d; want 1 and 1", len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	for _, arg := range []string{
		"--buildkite.token-file=/etc/buildkite-deployments-exporter/token/token",
		"--catalog.file=/etc/buildkite-deployments-exporter/catalog",
		"--storage.path=/data",
		"--web.listen-address=:10150",
	} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("exporter args %q lack %s", c.Args, arg)
		}
	}
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--config.file") }) {
		t.Errorf("no config: the exporter's defaults apply, but args have --config.file: %q", c.Args)
	}
	if got := spec.InitContainers[0].Args; !slices.Equal(got[len(got)-2:], []string{"check", "--offline"}) ||
		!slices.Equal(got[:len(got)-2], c.Args[:len(got)-2]) {
		t.Errorf("init container args %q: want the exporter's flags, then check --offline (exporter: %q)", got, c.Args)
	}
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	for name, path := range map[string]string{"startup": "/-/healthy", "liveness": "/-/healthy", "readiness": "/-/ready"} {
		p := probes[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "http" {
			t.Errorf("%s probe %+v: want GET %s on port http", name, p, path)
		}
	}
	for _, ctr := range append(spec.InitContainers, c) {
		sc := ctr.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s securityContext %+v: want a read-only root, no privilege escalation, ALL capabilities dropped", ctr.Name, sc)
		}
		if ctr.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s has no memory limit", ctr.Name)
		}
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod securityContext %+v: want non-root, uid 65532 (the image's nonroot user)", psc)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Errorf("volumeClaimTemplates %+v: want one named data, for --storage.path", sts.Spec.VolumeClaimTemplates)
	}
	// Without a value the chart creates no Secret and mounts the one the user creates.
	if got := volume(t, spec, "token").Secret.SecretName; got != "buildkite-deployments-exporter-token" {
		t.Errorf("token Secret %q", got)
	}
	if got := volume(t, spec, "catalog").ConfigMap.Name; got != "buildkite-deployments-exporter-catalog" {
		t.Errorf("catalog ConfigMap %q", got)
	}
}

func volume(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s among %+v", name, spec.Volumes)
	panic("unreachable")
}

func TestRenderAllOptional(t *testing.T) {
	objs := mustRender(t, allOptional())
	want := []string{
		"ConfigMap/buildkite-deployments-exporter-catalog",
		"ConfigMap/buildkite-deployments-exporter-config",
		"Ingress/buildkite-deployments-exporter-webhook",
		"PrometheusRule/buildkite-deployments-exporter",
		"Secret/buildkite-deployments-exporter-token",
		"Secret/buildkite-deployments-exporter-webhook-token",
		"Service/buildkite-deployments-exporter",
		"Service/buildkite-deployments-exporter-headless",
		"Service/buildkite-deployments-exporter-webhook",
		"ServiceAccount/buildkite-deployments-exporter",
		"ServiceMonitor/buildkite-deployments-exporter",
		"StatefulSet/buildkite-deployments-exporter",
	}
	dashboards, err := filepath.Glob("../dashboards/*.json")
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards in ../dashboards: %v", err)
	}
	for _, d := range dashboards {
		want = append(want, "ConfigMap/buildkite-deployments-exporter-dashboard-"+strings.TrimSuffix(filepath.Base(d), ".json"))
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, kinds(objs)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}

	t.Run("token only in its Secret", func(t *testing.T) {
		b64 := base64.StdEncoding.EncodeToString([]byte(testToken))
		for _, o := range objs {
			if strings.Contains(o.text, testToken) {
				t.Errorf("%s %s carries the token in plain text", o.kind, o.name)
			}
			if strings.Contains(o.text, b64) && o.name != "buildkite-deployments-exporter-token" {
				t.Errorf("%s %s carries the token", o.kind, o.name)
			}
		}
		s := find[*corev1.Secret](t, objs, "Secret", "buildkite-deployments-exporter-token")
		if string(s.Data["token"]) != testToken {
			t.Errorf("Secret data %q", s.Data)
		}
	})

	t.Run("dashboards", func(t *testing.T) {
		for _, d := range dashboards {
			base := filepath.Base(d)
			cm := find[*corev1.ConfigMap](t, objs, "ConfigMap", "buildkite-deployments-exporter-dashboard-"+strings.TrimSuffix(base, ".json"))
			if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Buildkite" {
				t.Errorf("%s: labels %v, annotations %v; want grafana_dashboard=1 and the folder annotation", cm.Name, cm.Labels, cm.Annotations)
			}
			src, err := os.ReadFile(d)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(src), cm.Data[base]); diff != "" {
				t.Errorf("%s differs from %s (-want +got):\n%s", cm.Name, d, diff)
			}
		}
	})

	t.Run("service monitor", func(t *testing.T) {
		sm := find[*monitoringv1.ServiceMonitor](t, objs, "ServiceMonitor", "buildkite-deployments-exporter")
		svc := find[*corev1.Service](t, objs, "Service", "buildkite-deployments-exporter")
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selects %s=%s, the Service has %v", k, v, svc.Labels)
			}
		}
		if sm.Labels["release"] != "kube-prometheus-stack" {
			t.Errorf("ServiceMonitor labels %v lack serviceMonitor.labels", sm.Labels)
		}
		ep := sm.Spec.Endpoints
		if len(ep) != 1 || ep[0].Port != svc.Spec.Ports[0].Name || len(ep[0].RelabelConfigs) != 1 ||
			ep[0].RelabelConfigs[0].TargetLabel != "job" || ep[0].RelabelConfigs[0].Replacement == nil ||
			*ep[0].RelabelConfigs[0].Replacement != "buildkite_deployments_exporter" {
			t.Errorf("endpoints %+v: want the Service's port, job relabelled to buildkite_deployments_exporter (the rules' selector)", ep)
		}
		if !strings.Contains(string(runExporter(t, "rules")), `job="buildkite_deployments_exporter"`) {
			t.Error(`the rules no longer select job="buildkite_deployments_exporter": update serviceMonitor.jobName`)
		}
	})

	t.Run("webhook", func(t *testing.T) {
		sts := find[*appsv1.StatefulSet](t, objs, "StatefulSet", "buildkite-deployments-exporter")
		c := sts.Spec.Template.Spec.Containers[0]
		for _, arg := range []string{"--webhook.listen-address=:10151", "--webhook.token-file=/etc/buildkite-deployments-exporter/webhook-token/webhook-token"} {
			if !slices.Contains(c.Args, arg) {
				t.Errorf("args %q lack %s", c.Args, arg)
			}
		}
		if slices.Contains(sts.Spec.Template.Spec.InitContainers[0].Args, "--webhook.listen-address=:10151") {
			t.Error("the check init container gets the webhook flags, which check does not take")
		}
		ing := find[*networkingv1.Ingress](t, objs, "Ingress", "buildkite-deployments-exporter-webhook")
		r := ing.Spec.Rules
		if len(r) != 1 || r[0].Host != "hooks.example.com" || len(r[0].HTTP.Paths) != 1 || r[0].HTTP.Paths[0].Path != "/webhooks/buildkite" ||
			r[0].HTTP.Paths[0].Backend.Service.Name != "buildkite-deployments-exporter-webhook" {
			t.Errorf("ingress rules %+v: want only /webhooks/buildkite of hooks.example.com to the webhook Service", r)
		}
		svc := find[*corev1.Service](t, objs, "Service", "buildkite-deployments-exporter-webhook")
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != "webhook" {
			t.Errorf("webhook Service ports %+v", svc.Spec.Ports)
		}
	})

	t.Run("rules are the rules command's", func(t *testing.T) {
		cm := find[*corev1.ConfigMap](t, objs, "ConfigMap", "buildkite-deployments-exporter-config")
		config := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(config, []byte(cm.Data["config.yml"]), 0o600); err != nil {
			t.Fatal(err)
		}
		checkRules(t, objs, runExporter(t, "rules", "--config.file="+config))
	})

	t.Run("check --offline accepts the rendered files", func(t *testing.T) {
		runCheckOffline(t, objs)
	})
}

// checkRules asserts that the PrometheusRule's spec is the rules file want, key for key, and that
// promtool accepts it.
func checkRules(t *testing.T, objs []object, want []byte) {
	t.Helper()
	var doc map[string]any
	for _, o := range objs {
		if o.kind == "PrometheusRule" {
			if err := yaml.Unmarshal([]byte(o.text), &doc); err != nil {
				t.Fatal(err)
			}
		}
	}
	if doc == nil {
		t.Fatal("no PrometheusRule")
	}
	var wantSpec map[string]any
	if err := yaml.Unmarshal(want, &wantSpec); err != nil {
		t.Fatal(err)
	}
	if len(wantSpec) != 1 || wantSpec["groups"] == nil {
		t.Fatalf("the rules command printed keys %v, want only groups", wantSpec)
	}
	if diff := cmp.Diff(wantSpec, doc["spec"]); diff != "" {
		t.Errorf("PrometheusRule spec differs from the rules command (-rules +chart):\n%s", diff)
	}
	spec, err := yaml.Marshal(doc["spec"])
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(file, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		promtool = "promtool" // Debian's prometheus package, as alerts/test.sh
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the PrometheusRule's groups: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("SUCCESS")) {
		t.Errorf("promtool check rules: %s", out)
	}
}

// runCheckOffline runs the init container's command line with the rendered Secret and ConfigMaps
// written where the pod would mount them (under a temporary directory): the exporter itself says
// whether the chart's flags, config and catalog are ones it accepts.
func runCheckOffline(t *testing.T, objs []object) {
	t.Helper()
	root := t.TempDir()
	sts := find[*appsv1.StatefulSet](t, objs, "StatefulSet", "buildkite-deployments-exporter")
	spec := sts.Spec.Template.Spec
	mounts := map[string]string{}
	for _, m := range spec.InitContainers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range spec.Volumes {
		dir := filepath.Join(root, mounts[v.Name])
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		var data map[string]string
		switch {
		case v.Secret != nil:
			s := find[*corev1.Secret](t, objs, "Secret", v.Secret.SecretName)
			data = map[string]string{}
			for k, b := range s.Data {
				data[k] = string(b)
			}
		case v.ConfigMap != nil:
			data = find[*corev1.ConfigMap](t, objs, "ConfigMap", v.ConfigMap.Name).Data
		}
		for k, content := range data {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	var args []string
	for _, a := range spec.InitContainers[0].Args {
		a = strings.ReplaceAll(a, "=/etc/", "="+root+"/etc/")
		a = strings.ReplaceAll(a, "=/data", "="+root+"/data")
		args = append(args, a)
	}
	out := runExporter(t, args...)
	for _, want := range []string{"1 component linked to 1 pipeline in 1 organization", "config.yml  valid", "a token is configured"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("check --offline output lacks %q:\n%s", want, out)
		}
	}

	// Every flag of the exporter container is one the binary has.
	help := string(runExporter(t, "--help"))
	flagName := regexp.MustCompile(`^--[a-z.-]+`)
	for _, a := range spec.Containers[0].Args {
		name := flagName.FindString(a)
		if name == "" || !strings.Contains(help, name+"=") {
			t.Errorf("the exporter has no flag %q (from %q)", name, a)
		}
	}
}

func TestRulesFollowConfig(t *testing.T) {
	vals := allOptional()
	vals["config"] = map[string]any{"alerts": map[string]any{"failing_for": "30m", "min_deployments": 5}}
	if _, err := render(t, vals); err == nil || !strings.Contains(err.Error(), "prometheusRule") {
		t.Fatalf("config with alert thresholds and the bundled rules rendered (err %v); want a refusal naming prometheusRule", err)
	}

	cm := "alerts:\n  failing_for: 30m\n  min_deployments: 5\n"
	config := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(config, []byte(cm), 0o600); err != nil {
		t.Fatal(err)
	}
	rules := runExporter(t, "rules", "--config.file="+config)
	if !bytes.Contains(rules, []byte("failing_for 30m")) {
		t.Fatalf("the rules command ignored the config:\n%.600s", rules)
	}
	vals["prometheusRule"] = map[string]any{"enabled": true, "rules": string(rules)}
	objs := mustRender(t, vals)
	checkRules(t, objs, rules)
	got := find[*corev1.ConfigMap](t, objs, "ConfigMap", "buildkite-deployments-exporter-config").Data["config.yml"]
	var gotCfg, wantCfg any
	if err := yaml.Unmarshal([]byte(got), &gotCfg); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(cm), &wantCfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantCfg, gotCfg); diff != "" {
		t.Errorf("config.yml (-values +rendered):\n%s", diff)
	}
}

func TestValuesSchema(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"unknown top-level key":   {"replica": 2},
		"unknown nested key":      {"serviceMonitor": map[string]any{"enable": true}},
		"token as a number":       {"buildkite": map[string]any{"token": map[string]any{"value": 42}}},
		"bad duration":            {"pollInterval": "30 seconds"},
		"flag without dashes":     {"extraArgs": []any{"web.disable-exporter-metrics"}},
		"requests over org cap":   {"buildkite": map[string]any{"requestsPerMinute": 500}},
		"catalog file not yaml":   {"catalog": map[string]any{"files": map[string]any{"shop.txt": shopCatalog}}},
		"webhook ingress no host": {"webhook": map[string]any{"enabled": true, "ingress": map[string]any{"enabled": true}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := render(t, vals); err == nil {
				t.Errorf("values %v rendered; want an error", vals)
			}
		})
	}
}

func TestShards(t *testing.T) {
	vals := map[string]any{
		"buildkite": map[string]any{"requestsPerMinute": 30},
		"shards": []any{
			map[string]any{"name": "acme", "organizations": []any{"acme"}, "token": map[string]any{"existingSecret": "bk-acme"}, "user": "ci-bot"},
			map[string]any{"name": "globex", "organizations": []any{"globex", "globex-labs"}, "token": map[string]any{"existingSecret": "bk-globex", "key": "api-token"}, "user": "ci-bot"},
			map[string]any{"name": "initech", "organizations": []any{"initech"}, "token": map[string]any{"existingSecret": "bk-initech"}},
		},
	}
	objs := mustRender(t, vals)
	svc := find[*corev1.Service](t, objs, "Service", "buildkite-deployments-exporter")
	want := map[string]struct {
		orgs   []string
		rpm    string
		secret string
		key    string
	}{
		"acme":    {[]string{"acme"}, "15", "bk-acme", "token"},
		"globex":  {[]string{"globex", "globex-labs"}, "15", "bk-globex", "api-token"},
		"initech": {[]string{"initech"}, "30", "bk-initech", "token"},
	}
	var statefulSets []*appsv1.StatefulSet
	for _, o := range objs {
		if o.kind == "StatefulSet" {
			statefulSets = append(statefulSets, o.decoded.(*appsv1.StatefulSet))
		}
	}
	if len(statefulSets) != len(want) {
		t.Fatalf("%d StatefulSets, want one per shard: %v", len(statefulSets), kinds(objs))
	}
	for name, w := range want {
		sts := find[*appsv1.StatefulSet](t, objs, "StatefulSet", "buildkite-deployments-exporter-"+name)
		args := sts.Spec.Template.Spec.Containers[0].Args
		var orgs []string
		for _, a := range args {
			if o, ok := strings.CutPrefix(a, "--buildkite.organization="); ok {
				orgs = append(orgs, o)
			}
		}
		if diff := cmp.Diff(w.orgs, orgs); diff != "" {
			t.Errorf("shard %s organizations (-want +got):\n%s", name, diff)
		}
		if !slices.Contains(args, "--buildkite.requests-per-minute="+w.rpm) {
			t.Errorf("shard %s args %q: want --buildkite.requests-per-minute=%s (the user's budget split between its shards)", name, args, w.rpm)
		}
		if !slices.Contains(args, "--buildkite.token-file=/etc/buildkite-deployments-exporter/token/"+w.key) {
			t.Errorf("shard %s args %q: want the token file %s", name, args, w.key)
		}
		if got := volume(t, sts.Spec.Template.Spec, "token").Secret.SecretName; got != w.secret {
			t.Errorf("shard %s token Secret %q, want %q", name, got, w.secret)
		}
		// Each StatefulSet selects only its own pods; the Service (and so the ServiceMonitor)
		// selects every shard's.
		podLabels := sts.Spec.Template.Labels
		for _, other := range statefulSets {
			selects := true
			for k, v := range other.Spec.Selector.MatchLabels {
				if podLabels[k] != v {
					selects = false
				}
			}
			if selects != (other.Name == sts.Name) {
				t.Errorf("StatefulSet %s selects the pods of %s: %v", other.Name, sts.Name, selects)
			}
		}
		for k, v := range svc.Spec.Selector {
			if podLabels[k] != v {
				t.Errorf("the Service does not select shard %s's pods (%s=%s)", name, k, v)
			}
		}
	}
	for _, o := range objs {
		if o.kind == "Secret" {
			t.Errorf("with shards the chart creates the Secret %s; each shard's token comes from its existing Secret", o.name)
		}
	}

	bad := map[string]any{"shards": []any{map[string]any{"name": "acme", "organizations": []any{"acme"}}}}
	if _, err := render(t, bad); err == nil {
		t.Error("a shard without a token rendered; want a schema error")
	}
}
