// Command generate writes the dashboards' JSON files. Run it through `go generate ./dashboards`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/dashboards"
)

func main() {
	out := flag.String("out", ".", "Directory to write the dashboard JSON files to.")
	flag.Parse()
	files, err := dashboards.Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(*out, name)
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "generate:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", path)
	}
}
