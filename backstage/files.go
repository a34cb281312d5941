package backstage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"go.yaml.in/yaml/v3"
)

// maxFileSize caps one catalog file. Real catalog-info.yaml files are a few KiB; the cap keeps a
// directory walk that meets a large generated YAML file from eating memory.
const maxFileSize = 16 << 20

// FileSource reads catalog-info.yaml files, as Backstage's file locations do.
//
// Each path is a file, a directory (walked recursively for *.yaml and *.yml, skipping hidden
// files and directories such as .git), or a glob ("*", "?", "[...]" per path segment, and "**" for
// any number of directories). Files may hold several YAML documents. Location entities are
// followed through spec.target and spec.targets: relative targets are resolved against the
// Location's file, a target may itself be a file, directory or glob, URL targets are reported
// (ReasonUnsupportedLocation), and a chain of Locations that leads back to a file being read is
// reported as ReasonLocationCycle. Every file is read at most once per Load.
type FileSource struct {
	paths  []string
	logger log.Logger
}

// NewFileSource returns a source reading paths (the --catalog.file values).
func NewFileSource(paths []string, logger log.Logger) *FileSource {
	return &FileSource{paths: slices.Clone(paths), logger: logger}
}

func (s *FileSource) String() string { return "files " + strings.Join(s.paths, ",") }

// Load reads every file. It fails only when no file at all could be read ("every file vanished"),
// so that the caller keeps its last good catalog; a single bad file is a Problem.
func (s *FileSource) Load(ctx context.Context) (Result, error) {
	l := &fileLoader{ctx: ctx, logger: s.logger, visited: map[string]bool{}}
	if len(s.paths) == 0 {
		return Result{}, errors.New("no catalog file configured")
	}
	for _, p := range s.paths {
		files, err := expand(p)
		if err != nil {
			l.problem(ReasonUnreadableFile, p, "", "%v; fix or remove this --catalog.file value", err)
			continue
		}
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
			l.readFile(f, nil, "")
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if l.read == 0 {
		return Result{Problems: l.res.Problems}, fmt.Errorf("none of the catalog files could be read (%d problems); keeping the last good catalog", len(l.res.Problems))
	}
	level.Debug(s.logger).Log("msg", "Read catalog files", "files", l.read, "components", len(l.res.Components), "problems", len(l.res.Problems))
	return l.res, nil
}

type fileLoader struct {
	ctx     context.Context
	logger  log.Logger
	visited map[string]bool // absolute paths already read
	read    int             // files read successfully
	res     Result
}

func (l *fileLoader) problem(r Reason, source, entity, format string, args ...any) {
	l.res.Problems = append(l.res.Problems, Problem{Reason: r, Source: source, Entity: entity, Message: fmt.Sprintf(format, args...)})
}

// chainLink is a file whose Locations are being followed.
type chainLink struct{ abs, display string }

// readFile reads one file and the Locations in it. chain holds the files whose Locations led
// here; from is the Location ("file:line") that named this file.
func (l *fileLoader) readFile(file string, chain []chainLink, from string) {
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = filepath.Clean(file)
	}
	if i := slices.IndexFunc(chain, func(c chainLink) bool { return c.abs == abs }); i >= 0 {
		var names []string
		for _, c := range chain[i:] {
			names = append(names, c.display)
		}
		l.problem(ReasonLocationCycle, from, "", "Location target %s leads back to a file that is already being read (%s → %s); remove the target that closes the loop",
			file, strings.Join(names, " → "), file)
		return
	}
	if l.visited[abs] || l.ctx.Err() != nil {
		return
	}
	l.visited[abs] = true

	data, err := readCapped(file)
	if err != nil {
		source := file
		if from != "" {
			source = from
		}
		l.problem(ReasonUnreadableFile, source, "", "cannot read %s: %v; fix its permissions or remove it from the catalog", file, err)
		return
	}
	l.read++
	if !bytes.Contains(data, []byte("buildkite.com/")) && !bytes.Contains(bytes.ToLower(data), []byte("location")) {
		// Neither an annotation nor a Location: nothing here can link a pipeline, so the file is
		// not parsed (a walked directory's unrelated YAML, even broken, is none of our business).
		return
	}
	chain = append(slices.Clone(chain), chainLink{abs: abs, display: file})

	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// The YAML parser cannot resume after a syntax error; the documents before it are kept.
			l.problem(ReasonMalformedYAML, file+yamlErrorLine(err), "", "invalid YAML: %v; fix the syntax (documents after this point were not read)", strings.TrimPrefix(err.Error(), "yaml: "))
			return
		}
		if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue // an empty document or one that is no entity at all
		}
		root := doc.Content[0]
		where := file + ":" + strconv.Itoa(root.Line)
		var e rawEntity
		if err := root.Decode(&e); err != nil {
			if line := yamlErrorLine(err); line != "" {
				where = file + line
			}
			l.problem(ReasonMalformedYAML, where, "", "the document does not have the shape of a Backstage entity (%s); metadata and spec must be mappings", shapeError(err))
			continue
		}
		if strings.EqualFold(e.kind(), "Location") {
			l.location(&e, file, where, chain)
			continue
		}
		o := toComponent(&e, file, where)
		switch {
		case o.component != nil:
			l.res.Components = append(l.res.Components, *o.component)
		case o.problem != nil:
			l.res.Problems = append(l.res.Problems, *o.problem)
		case o.ignored != nil:
			l.res.Ignored = append(l.res.Ignored, *o.ignored)
		}
	}
}

// location follows the targets of a Location entity found in file.
func (l *fileLoader) location(e *rawEntity, file, where string, chain []chainLink) {
	ref := e.entityRef()
	if msg := e.checkAPIVersion(); msg != "" {
		l.problem(ReasonUnknownAPIVersion, where, ref, "%s; its targets were not read", msg)
		return
	}
	var targets []string
	if t, ok := e.Spec["target"]; ok {
		s, ok := t.(string)
		if !ok || s == "" {
			l.problem(ReasonInvalidEntity, where, ref, "spec.target must be a path")
			return
		}
		targets = append(targets, s)
	}
	if ts, ok := e.Spec["targets"]; ok {
		list, ok := ts.([]any)
		if !ok {
			l.problem(ReasonInvalidEntity, where, ref, "spec.targets must be a list of paths")
			return
		}
		for _, t := range list {
			s, ok := t.(string)
			if !ok || s == "" {
				l.problem(ReasonInvalidEntity, where, ref, "spec.targets must be a list of paths")
				return
			}
			targets = append(targets, s)
		}
	}
	for _, t := range targets {
		if strings.Contains(t, "://") {
			l.problem(ReasonUnsupportedLocation, where, ref, "target %s is a URL; only local files are followed. Check out that repository and add its path with --catalog.file, or use --catalog.backstage-url", t)
			continue
		}
		resolved := t
		if !filepath.IsAbs(t) {
			// Backstage resolves a relative target against the Location's own file.
			resolved = filepath.Join(filepath.Dir(file), t)
		}
		files, err := expand(resolved)
		if err != nil {
			l.problem(ReasonUnreadableFile, where, ref, "target %s: %v; fix the target or remove it", t, err)
			continue
		}
		for _, f := range files {
			l.readFile(f, chain, where)
		}
	}
}

var (
	yamlLineRE = regexp.MustCompile(`line (\d+)`)
	// yamlIntoRE drops the Go type from "cannot unmarshal !!seq into struct { ... }".
	yamlIntoRE = regexp.MustCompile(` into .*`)
)

// shapeError shortens a go.yaml.in/yaml type error to "line N: cannot unmarshal !!seq; ...".
func shapeError(err error) string {
	var terr *yaml.TypeError
	if !errors.As(err, &terr) {
		return strings.TrimPrefix(err.Error(), "yaml: ")
	}
	msgs := make([]string, 0, len(terr.Errors))
	for _, e := range terr.Errors {
		msgs = append(msgs, yamlIntoRE.ReplaceAllString(e, ""))
	}
	return strings.Join(msgs, "; ")
}

// yamlErrorLine returns ":N" for the first line number in a go.yaml.in/yaml error, or "".
func yamlErrorLine(err error) string {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		return ":" + m[1]
	}
	return ""
}

func readCapped(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, errors.Unwrap(err) // *PathError repeats the path, which the caller already names
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d MiB, which no catalog file is", maxFileSize>>20)
	}
	return data, nil
}

// expand turns a path, directory or glob into the files it names, in lexical order.
func expand(p string) ([]string, error) {
	if strings.ContainsAny(p, "*?[") {
		matches, err := glob(p)
		if err != nil {
			return nil, fmt.Errorf("invalid glob %q: %w", p, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("no file matches %q", p)
		}
		var files []string
		for _, m := range matches {
			fi, err := os.Stat(m)
			switch {
			case err != nil:
				continue // vanished between the glob and now
			case fi.IsDir():
				found, err := walk(m)
				if err != nil {
					return nil, err
				}
				files = append(files, found...)
			default:
				files = append(files, m)
			}
		}
		return files, nil
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s does not exist", p)
	case err != nil:
		return nil, fmt.Errorf("cannot read %s: %v", p, errors.Unwrap(err))
	case fi.IsDir():
		return walk(p)
	}
	return []string{p}, nil
}

// walk returns the *.yaml and *.yml files under dir, skipping hidden files and directories.
func walk(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && isYAML(d.Name()) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("directory %s holds no .yaml or .yml file", dir)
	}
	return files, nil
}

func isYAML(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// glob is filepath.Glob plus "**", which matches any number of directories (as in Backstage's
// file locations, e.g. "./services/**/catalog-info.yaml").
func glob(pattern string) ([]string, error) {
	if !strings.Contains(pattern, "**") {
		return filepath.Glob(pattern)
	}
	sep := string(filepath.Separator)
	segs := strings.Split(filepath.Clean(pattern), sep)
	// The walk starts at the longest prefix without meta characters.
	n := 0
	for n < len(segs) && !strings.ContainsAny(segs[n], "*?[") {
		n++
	}
	root := strings.Join(segs[:n], sep)
	if root == "" {
		root = "."
		if strings.HasPrefix(pattern, sep) {
			root = sep
		}
	}
	rest := segs[n:]
	for _, s := range rest {
		if _, err := filepath.Match(s, ""); err != nil {
			return nil, err
		}
	}
	var matches []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return nil // a missing root simply matches nothing, as filepath.Glob does
			}
			return nil
		}
		if path != root && strings.HasPrefix(d.Name(), ".") && d.IsDir() {
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return nil
		}
		if matchSegments(rest, strings.Split(rel, sep)) {
			matches = append(matches, path)
		}
		return nil
	})
	return matches, err
}

// matchSegments matches path segments against pattern segments, "**" standing for zero or more.
func matchSegments(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegments(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := filepath.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
