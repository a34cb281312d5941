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
	"sync"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"go.yaml.in/yaml/v3"
)

// Limits of one file load. Real catalog-info.yaml files are a few KiB; the caps keep a directory
// walk that meets a large generated YAML file, or a tree of millions of files, from eating memory.
const (
	// MaxFileSize caps one catalog file; a larger one is an unreadable_file problem.
	MaxFileSize = 16 << 20
	// maxFiles caps the files one Load lists and reads.
	maxFiles = 100_000
	// maxEntities caps the entities one Load of a source (files or API) reads; more is a problem
	// and a failed load, so that the last good catalog is kept.
	maxEntities = 100_000
)

// FileSource reads catalog-info.yaml files, as Backstage's file locations do.
//
// Each path is a file, a directory (walked recursively for *.yaml and *.yml, skipping hidden
// files and directories such as .git), or a glob ("*", "?", "[...]" per path segment, and "**" for
// any number of directories). Files may hold several YAML documents. Location entities are
// followed through spec.target and spec.targets: relative targets are resolved against the
// Location's file, a target may itself be a file, directory or glob, URL targets are reported
// (ReasonUnsupportedLocation), and a chain of Locations that leads back to a file being read is
// reported as ReasonLocationCycle. Every file is read at most once per Load.
//
// Only regular files are read: a named pipe, a device or a socket (a Location pointing at
// /dev/stdin, a FIFO called catalog.yaml) is a ReasonUnreadableFile problem and never blocks the
// load, and so is a file larger than MaxFileSize. Files that do not look like Backstage entities
// (see looksLikeEntity: Kubernetes manifests, CI pipelines, Helm templates) are not parsed and
// never a problem; a file that does and is not valid YAML is a ReasonMalformedYAML problem.
type FileSource struct {
	paths  []string
	logger log.Logger

	mu    sync.Mutex
	stuck *fileLoader // a load abandoned at its deadline that is still blocked in a read
}

// NewFileSource returns a source reading paths (the --catalog.file values).
func NewFileSource(paths []string, logger log.Logger) *FileSource {
	return &FileSource{paths: slices.Clone(paths), logger: logger}
}

func (s *FileSource) String() string { return "files " + strings.Join(s.paths, ",") }

// beforeRead is called with each file's path before it is opened; tests make it block to stand
// for a hung file system.
var beforeRead = func(string) {}

// Load reads every file. It fails only when no file at all could be read ("every file vanished"),
// when the deadline of ctx passes, or when the load reads more than its caps allow; the caller
// then keeps its last good catalog. A single bad file is a Problem.
//
// Load returns at the deadline of ctx even when a read is blocked (a hung network file system):
// the Result then holds what was read before, with a ReasonUnreadableFile problem naming the file
// being read. Until that read returns, further Loads fail at once with a problem saying so, so
// that a hung mount costs one goroutine, not one per refresh.
func (s *FileSource) Load(ctx context.Context) (Result, error) {
	if len(s.paths) == 0 {
		return Result{}, errors.New("no catalog file configured")
	}
	s.mu.Lock()
	if st := s.stuck; st != nil {
		s.mu.Unlock()
		st.mu.Lock()
		file, since := st.current, st.started
		st.mu.Unlock()
		p := newProblem(ReasonUnreadableFile, file, "", "an earlier catalog load (started %s) is still blocked reading this file; check the file system it is on (a hung network mount?)",
			since.Format(time.RFC3339))
		return Result{Problems: []Problem{p}}, errors.New("an earlier catalog load is still blocked reading " + file)
	}
	s.mu.Unlock()

	l := &fileLoader{ctx: ctx, logger: s.logger, visited: map[string]bool{}, started: time.Now()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(s.paths)
		s.mu.Lock()
		l.exited = true
		if s.stuck == l {
			s.stuck = nil
		}
		s.mu.Unlock()
	}()
	finished := true
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		if !l.exited {
			finished = false
			s.stuck = l
		}
		s.mu.Unlock()
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.abandoned = true // a loader still running adds nothing more
	res := Result{Components: slices.Clone(l.res.Components), Problems: slices.Clone(l.res.Problems), Ignored: slices.Clone(l.res.Ignored)}
	switch {
	case !finished || l.interrupted:
		where := l.current
		if where == "" {
			where = strings.Join(s.paths, ",")
		}
		elapsed := time.Since(l.started).Round(time.Millisecond)
		res.Problems = append(res.Problems, newProblem(ReasonUnreadableFile, where, "",
			"the catalog load stopped at its deadline after %s, while reading this; %d files were read, the others were not. Check the file system (a hung network mount?) or narrow --catalog.file",
			elapsed, l.read))
		return res, fmt.Errorf("the catalog load stopped at its deadline after %s with %d files read: %w", elapsed, l.read, context.Cause(ctx))
	case l.err != nil:
		return res, l.err
	case l.read == 0:
		return Result{Problems: res.Problems}, fmt.Errorf("none of the catalog files could be read (%d problems); keeping the last good catalog", len(res.Problems))
	}
	level.Debug(s.logger).Log("msg", "Read catalog files", "files", l.read, "components", len(res.Components), "problems", len(res.Problems))
	return res, nil
}

type fileLoader struct {
	ctx      context.Context
	logger   log.Logger
	started  time.Time
	exited   bool            // run has returned; guarded by the FileSource's mu
	visited  map[string]bool // absolute paths already read
	files    int             // files opened or refused, against maxFiles
	entities int             // entity documents, against maxEntities

	mu          sync.Mutex // guards the fields below, shared with Load once the deadline passes
	current     string     // the file being read, "" between files
	read        int        // files read successfully
	res         Result
	err         error // the load as a whole failed (a cap, the deadline)
	interrupted bool  // stopped early because ctx was done
	abandoned   bool  // Load has returned; add nothing more
}

func (l *fileLoader) run(paths []string) {
	for _, p := range paths {
		if l.stop() {
			return
		}
		files, err := expand(l.ctx, p)
		if err != nil {
			if l.stop() {
				return
			}
			l.problem(ReasonUnreadableFile, p, "", "%v; fix or remove this --catalog.file value", err)
			continue
		}
		for _, f := range files {
			if l.stop() {
				return
			}
			l.readFile(f, nil, "", "")
		}
	}
}

// stop reports whether the load must end: ctx is done or a cap was reached.
func (l *fileLoader) stop() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		l.interrupted = true
	}
	return l.interrupted || l.err != nil || l.abandoned
}

func (l *fileLoader) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
}

func (l *fileLoader) problem(r Reason, source, entity, format string, args ...any) {
	l.add(outcome{problem: ptr(newProblem(r, source, entity, format, args...))})
}

// add records what one entity or file turned into.
func (l *fileLoader) add(o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.abandoned {
		return
	}
	switch {
	case o.component != nil:
		l.res.Components = append(l.res.Components, *o.component)
	case o.problem != nil:
		l.res.Problems = append(l.res.Problems, *o.problem)
	case o.ignored != nil:
		l.res.Ignored = append(l.res.Ignored, *o.ignored)
	}
}

func ptr[T any](v T) *T { return &v }

// chainLink is a file whose Locations are being followed.
type chainLink struct{ abs, display string }

// readFile reads one file and the Locations in it. chain holds the files whose Locations led
// here; from is the Location ("file:line") that named this file, fromRef its entity ref.
func (l *fileLoader) readFile(file string, chain []chainLink, from, fromRef string) {
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = filepath.Clean(file)
	}
	if i := slices.IndexFunc(chain, func(c chainLink) bool { return c.abs == abs }); i >= 0 {
		var names []string
		for _, c := range chain[i:] {
			names = append(names, c.display)
		}
		l.problem(ReasonLocationCycle, from, fromRef, "Location target %s leads back to a file that is already being read (%s → %s); remove the target that closes the loop",
			file, strings.Join(names, " → "), file)
		return
	}
	if l.visited[abs] || l.stop() {
		return
	}
	l.visited[abs] = true
	if l.files++; l.files > maxFiles {
		l.fail(fmt.Errorf("the catalog paths name more than %d files; narrow --catalog.file", maxFiles))
		l.problem(ReasonUnreadableFile, file, "", "the catalog paths name more than %d files, so the load stopped here; narrow --catalog.file to the directories that hold catalog-info.yaml files", maxFiles)
		return
	}

	l.mu.Lock()
	l.current = file
	l.mu.Unlock()
	data, err := readRegular(file)
	l.mu.Lock()
	l.current = ""
	l.mu.Unlock()
	if err != nil {
		source := file
		if from != "" {
			source = from
		}
		l.problem(ReasonUnreadableFile, source, fromRef, "cannot read %s: %v", file, err)
		return
	}
	l.mu.Lock()
	l.read++
	l.mu.Unlock()
	if !looksLikeEntity(data) {
		// No document here can be a Backstage entity (a Kubernetes manifest, a CI pipeline, a
		// Helm template): the file is not parsed, and even if it is broken it is none of our
		// business.
		return
	}
	chain = append(slices.Clone(chain), chainLink{abs: abs, display: file})

	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		if l.stop() {
			return
		}
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
		if l.entities++; l.entities > maxEntities {
			l.fail(fmt.Errorf("the catalog files hold more than %d entities", maxEntities))
			l.problem(ReasonUnreadableFile, file, "", "the catalog files hold more than %d entities, so the load stopped here; narrow --catalog.file", maxEntities)
			return
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
		near, _ := nearestKind(e.kind())
		switch kind := e.kind(); {
		case kind == kindLocation:
			l.location(&e, file, where, chain)
		case near == kindLocation && e.isBackstage():
			l.problem(ReasonMisspelledKind, where, e.entityRef(), "kind %q is not a Backstage kind (kinds are case-sensitive; the catalog rejects this entity), so its targets were not read; did you mean %q? Write kind: %s",
				clip(kind, 100), kindLocation, kindLocation)
		default:
			l.add(toComponent(&e, file, where))
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
		files, err := expand(l.ctx, resolved)
		if err != nil {
			l.problem(ReasonUnreadableFile, where, ref, "target %s: %v; fix the target or remove it", t, err)
			continue
		}
		for _, f := range files {
			l.readFile(f, chain, where, ref)
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

// readRegular reads a regular file of at most MaxFileSize bytes. Anything else (a named pipe, a
// device such as /dev/stdin, a socket, a directory) is refused before it is opened, and checked
// again once open (O_NONBLOCK, so that a FIFO swapped in between cannot block the open), so that
// no read ever waits for a writer.
func readRegular(file string) ([]byte, error) {
	beforeRead(file)
	fi, err := os.Stat(file)
	if err != nil {
		return nil, errors.Unwrap(err) // *PathError repeats the path, which the caller already names
	}
	if err := checkRegular(fi); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, errors.Unwrap(err)
	}
	if err := checkRegular(fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	if len(data) > MaxFileSize {
		return nil, errTooLarge
	}
	return data, nil
}

var errTooLarge = fmt.Errorf("it is larger than %d MiB, which no catalog file is; remove it from the catalog paths or split it", MaxFileSize>>20)

func checkRegular(fi fs.FileInfo) error {
	m := fi.Mode()
	if m.IsRegular() {
		if fi.Size() > MaxFileSize {
			return errTooLarge
		}
		return nil
	}
	what := "a special file"
	switch {
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeDevice != 0:
		what = "a device"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	}
	return fmt.Errorf("it is not a regular file but %s, which is never read (it could block the catalog load); remove it from the catalog paths or point the Location at a file", what)
}

// looksLikeEntity reports, cheaply and without parsing, whether any YAML document in data could
// be a Backstage entity: its top-level keys (those at the document's first indentation) include
// an apiVersion of backstage.io or of a subdomain of it (scaffolder.backstage.io/…), also within
// two edits of it (backstag.io/…, a typo), or kind and metadata with no apiVersion at all. A
// document that is a flow mapping ({...}, JSON style) counts when it mentions backstage.io. So
// Kubernetes manifests (apiVersion apps/v1, v1, …), CI pipelines, GitHub workflows and Helm values
// are skipped without a parse, even when they are not valid YAML.
func looksLikeEntity(data []byte) bool {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	var (
		indent               = -1 // of the document's first key, -1 before it
		kind, meta, apiOther bool
		flow                 bool
	)
	endDoc := func() bool {
		found := kind && meta && !apiOther
		indent, kind, meta, apiOther, flow = -1, false, false, false, false
		return found
	}
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if bytes.HasPrefix(line, []byte("---")) || bytes.HasPrefix(line, []byte("...")) {
			if endDoc() {
				return true
			}
			continue
		}
		trimmed := bytes.TrimLeft(line, " ")
		if len(trimmed) == 0 || trimmed[0] == '#' || (indent < 0 && trimmed[0] == '%') {
			continue
		}
		n := len(line) - len(trimmed)
		if indent < 0 {
			indent = n
			flow = trimmed[0] == '{'
		}
		if flow {
			// A flow-style (JSON-like) document spans lines until the next one: a mention counts.
			if bytes.Contains(line, []byte("backstage.io")) {
				return true
			}
			continue
		}
		if n != indent {
			continue
		}
		key, value, ok := bytes.Cut(trimmed, []byte(":"))
		if !ok {
			continue
		}
		switch string(bytes.Trim(bytes.TrimSpace(key), `"'`)) {
		case "apiVersion":
			if backstageAPIVersion(value) {
				return true
			}
			apiOther = true
		case "kind":
			kind = true
		case "metadata":
			meta = true
		}
	}
	return endDoc()
}

// backstageAPIVersion reports whether a raw apiVersion value (the text after "apiVersion:") names
// backstage.io or a subdomain, or is a near miss of it.
func backstageAPIVersion(value []byte) bool {
	v := bytes.TrimSpace(value)
	if i := bytes.Index(v, []byte(" #")); i >= 0 {
		v = bytes.TrimSpace(v[:i])
	}
	v = bytes.Trim(v, `"'`)
	group, _, ok := bytes.Cut(v, []byte("/"))
	if !ok {
		return false // "v1", the Kubernetes core group
	}
	g := strings.ToLower(string(group))
	return g == "backstage.io" || strings.HasSuffix(g, ".backstage.io") || editDistance(g, "backstage.io", maxNearMiss) <= maxNearMiss
}

// expand turns a path, directory or glob into the files it names, in lexical order.
// A walk stops at ctx's deadline and after maxFiles files.
func expand(ctx context.Context, p string) ([]string, error) {
	if strings.ContainsAny(p, "*?[") {
		matches, err := glob(ctx, p)
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
				found, err := walk(ctx, m)
				if err != nil {
					return nil, err
				}
				files = append(files, found...)
			default:
				files = append(files, m)
			}
			if len(files) > maxFiles {
				return nil, errTooManyFiles
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
		return walk(ctx, p)
	}
	return []string{p}, nil
}

var errTooManyFiles = fmt.Errorf("it names more than %d files; narrow it to the directories that hold catalog-info.yaml files", maxFiles)

// walk returns the *.yaml and *.yml files under dir, skipping hidden files and directories.
func walk(ctx context.Context, dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("cannot read %s: %v", path, errors.Unwrap(err))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && isYAML(d.Name()) {
			if files = append(files, path); len(files) > maxFiles {
				return errTooManyFiles
			}
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
func glob(ctx context.Context, pattern string) ([]string, error) {
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
			return nil // a missing root simply matches nothing, as filepath.Glob does; nor does an unreadable directory
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if path != root && strings.HasPrefix(d.Name(), ".") && d.IsDir() {
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return nil
		}
		if matchSegments(rest, strings.Split(rel, sep)) {
			if matches = append(matches, path); len(matches) > maxFiles {
				return errTooManyFiles
			}
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
