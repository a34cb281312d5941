package backstage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-kit/log"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

const benchEntities = 10000

// BenchmarkFileSourceLoad10000 loads 10,000 annotated entities: one catalog-info.yaml per service
// in 100 team directories (the monorepo layout), and the same entities as one multi-document file.
func BenchmarkFileSourceLoad10000(b *testing.B) {
	b.Run("files", func(b *testing.B) {
		dir := b.TempDir()
		for i := range benchEntities {
			d := filepath.Join(dir, fmt.Sprintf("team-%02d", i%100), fmt.Sprintf("svc-%05d", i))
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			writeComponent(b, filepath.Join(d, "catalog-info.yaml"), fmt.Sprintf("svc-%05d", i), fmt.Sprintf("acme/svc-%05d", i))
		}
		benchLoad(b, dir)
	})
	b.Run("files_among_manifests", func(b *testing.B) {
		// The monorepo again, each service also holding a Kubernetes manifest (which names the
		// Backstage Kubernetes plugin's label) and a Helm template that is not valid YAML: the
		// pre-filter's work is to skip both without parsing them.
		dir := b.TempDir()
		for i := range benchEntities {
			d := filepath.Join(dir, fmt.Sprintf("team-%02d", i%100), fmt.Sprintf("svc-%05d", i))
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			writeComponent(b, filepath.Join(d, "catalog-info.yaml"), fmt.Sprintf("svc-%05d", i), fmt.Sprintf("acme/svc-%05d", i))
			writeFile(b, filepath.Join(d, "deployment.yaml"), fmt.Sprintf(benchManifest, i, i, i))
			writeFile(b, filepath.Join(d, "chart-template.yaml"), benchHelm)
		}
		benchLoad(b, dir)
	})
	b.Run("one_file", func(b *testing.B) {
		var sb strings.Builder
		for i := range benchEntities {
			fmt.Fprintf(&sb, "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: svc-%05d\n  tags: [a, b]\n  annotations:\n    buildkite.com/pipeline-slug: acme/svc-%05d\nspec:\n  owner: team\n  type: service\n  lifecycle: production\n", i, i)
		}
		file := filepath.Join(b.TempDir(), "catalog.yaml")
		if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		benchLoad(b, file)
	})
}

const benchManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-%05d
  labels:
    backstage.io/kubernetes-id: svc-%05d
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: app
          image: registry.example.com/svc-%05d:latest
          env:
            - name: LOCATION
              value: eu-west-1
`

const benchHelm = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "svc.fullname" . }}
data:
  {{- range $k, $v := .Values.config }}
  {{ $k }}: {{ $v | quote }}
  {{- end }}
`

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func benchLoad(b *testing.B, path string) {
	src := backstage.NewFileSource([]string{path}, log.NewNopLogger())
	b.ReportAllocs()
	for b.Loop() {
		res, err := backstage.Load(context.Background(), src)
		if err != nil || len(res.Components) != benchEntities || len(res.Problems) != 0 {
			b.Fatalf("loaded %d components, %d problems, err %v", len(res.Components), len(res.Problems), err)
		}
	}
}
