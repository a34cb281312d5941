package deploy

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate the chart's files/ (rules, dashboards) and deploy/kubernetes from their sources")

const (
	chartDir = "helm/buildkite-deployments-exporter"
	// The release the plain manifests are rendered as: its name contains the chart's, so objects
	// are called buildkite-deployments-exporter, in kube-prometheus's namespace.
	releaseName      = "buildkite-deployments-exporter"
	releaseNamespace = "monitoring"
)

// exporterBinary is the exporter built from the root module, so that the rules the chart ships
// are compared with what the real `rules` command prints, not with a library call.
var exporterBinary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exporterBinary = filepath.Join(dir, "buildkite_deployments_exporter")
	build := exec.Command("go", "build", "-o", exporterBinary, ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the exporter: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// object is one rendered manifest: the template it came from, its text and its kind.
type object struct {
	template string
	text     string
	kind     string
	name     string
	decoded  any
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

// render is `helm template` through Helm's library: schema validation on, strict templates
// (a missing value is an error), the release above unless named.
func render(t *testing.T, vals map[string]any) ([]object, error) {
	t.Helper()
	ch := loadChart(t)
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals, opts, chartutil.DefaultCapabilities, false)
	if err != nil {
		return nil, err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var objs []object
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue // NOTES.txt, _helpers.tpl
		}
		for _, doc := range splitDocuments(files[name]) {
			obj, err := decodeStrict(doc)
			if err != nil {
				return nil, fmt.Errorf("%s: %w\n%s", name, err, doc)
			}
			obj.template = filepath.Base(name)
			objs = append(objs, obj)
		}
	}
	return objs, nil
}

var separator = regexp.MustCompile(`(?m)^---\s*$`)

// splitDocuments splits a rendered template into its YAML documents, dropping those that hold
// only comments and blank lines (a disabled object).
func splitDocuments(s string) []string {
	var docs []string
	for _, d := range separator.Split(s, -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, strings.TrimLeft(d, "\n"))
		}
	}
	return docs
}

// decodeStrict decodes one manifest into the Go type of its apiVersion and kind, with unknown
// and duplicate fields an error: a misspelt or misplaced key fails here instead of being dropped
// by the API server.
func decodeStrict(doc string) (object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return object{}, err
	}
	var into any
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/ServiceAccount":
		into = &corev1.ServiceAccount{}
	case "v1/Secret":
		into = &corev1.Secret{}
	case "v1/ConfigMap":
		into = &corev1.ConfigMap{}
	case "v1/Service":
		into = &corev1.Service{}
	case "apps/v1/StatefulSet":
		into = &appsv1.StatefulSet{}
	case "networking.k8s.io/v1/Ingress":
		into = &networkingv1.Ingress{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		into = &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		into = &monitoringv1.PrometheusRule{}
	default:
		return object{}, fmt.Errorf("unexpected kind %s/%s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		return object{}, fmt.Errorf("%s does not decode strictly: %w", tm.Kind, err)
	}
	name := into.(metav1.ObjectMetaAccessor).GetObjectMeta().GetName()
	if name == "" {
		return object{}, fmt.Errorf("%s without a name", tm.Kind)
	}
	return object{text: doc, kind: tm.Kind, name: name, decoded: into}, nil
}

func mustRender(t *testing.T, vals map[string]any) []object {
	t.Helper()
	objs, err := render(t, vals)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find[T any](t *testing.T, objs []object, kind, name string) T {
	t.Helper()
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			return o.decoded.(T)
		}
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.kind+"/"+o.name)
	}
	t.Fatalf("no %s %q among %v", kind, name, kinds)
	panic("unreachable")
}

func kinds(objs []object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.kind+"/"+o.name)
	}
	sort.Strings(out)
	return out
}

// runExporter runs the exporter built in TestMain and returns its standard output.
func runExporter(t *testing.T, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(exporterBinary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("%v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.Bytes(), stderr.Bytes())
		}
		t.Fatal(err)
	}
	return stdout.Bytes()
}
