// Package build runs Dockerfile builds as Docker's classic builder does
// (`DOCKER_BUILDKIT=0 docker build`): each instruction is a step whose
// result is an image, RUN runs in a container on this engine and COPY/ADD
// unpack into one, and a step whose parent image and instruction (with the
// content it copies) are unchanged is taken from the cache. The Dockerfile
// is parsed by BuildKit's own parser and instructions packages; variable
// expansion is its shell package's, so both read a Dockerfile as Docker does.
package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
)

// Images is the image store as a build uses it (*images.Store).
type Images interface {
	Get(refOrID string) (images.Image, error)
	ConfigOf(refOrID string) (images.Image, []byte, error)
	List() ([]images.Image, error)
	CommitWithOptions(ctx context.Context, upperdir string, parent images.Image, opts images.CommitOptions) (images.Image, error)
	Tag(src, dst string) error
	RootfsOf(containerID string) (images.Rootfs, error)
}

// Containers runs the steps' containers (*containers.Engine).
type Containers interface {
	Create(ctx context.Context, name string, cfg containers.Config) (containers.Container, error)
	Start(ctx context.Context, idOrName string) error
	AttachRegistered(ctx context.Context, idOrName string, stdin io.Reader, out io.Writer, registered func()) error
	Wait(ctx context.Context, idOrName, condition string, registered func()) (containers.State, error)
	ExtractToDir(ctx context.Context, idOrName, path string, r io.Reader) error
	ArchivePath(ctx context.Context, idOrName, path string, w io.Writer) error
	StatPath(idOrName, path string) (containers.PathStat, error)
	Remove(ctx context.Context, idOrName string, force bool) error
}

// Builder builds images on one engine.
type Builder struct {
	Images     Images
	Containers Containers
	// Pull fetches an image that FROM or COPY --from names and that is not
	// here (or every time with Options.Pull), its progress to out.
	Pull func(ctx context.Context, ref string, out io.Writer) (images.Image, error)
}

// Options are one build's settings (`docker build`'s flags).
type Options struct {
	// ContextDir is the unpacked build context, read only through the
	// builder's index of it (no symlink in it is ever followed).
	ContextDir string
	// Dockerfile is the Dockerfile's path in the context ("Dockerfile").
	Dockerfile string
	Tags       []string
	BuildArgs  map[string]*string
	Target     string
	NoCache    bool
	Pull       bool
	Labels     map[string]string
	// Out receives the classic builder's step lines and RUN's output.
	Out io.Writer
	// NetworkMode is RUN's network: "" (the default bridge) or "none".
	NetworkMode string
	// KeepContainers keeps the containers of the steps that succeeded
	// (`rm=0`); a failed step's container is always removed.
	KeepContainers bool
}

// maxDockerfile bounds what the parser reads.
const maxDockerfile = 10 << 20

// ErrBuild marks an error of the build's input or of a step (a bad
// Dockerfile, a missing file, a RUN that failed): the client's to fix.
var ErrBuild = errors.New("build failed")

func buildErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBuild, fmt.Sprintf(format, a...))
}

// Build runs the build and returns the final image's ID. On failure no
// container of it is left, and no tag is set.
func (b *Builder) Build(ctx context.Context, opts Options) (string, error) {
	if opts.Dockerfile == "" {
		opts.Dockerfile = "Dockerfile"
	}
	df := filepath.ToSlash(filepath.Clean(opts.Dockerfile))
	if strings.HasPrefix(df, "../") || filepath.IsAbs(opts.Dockerfile) {
		return "", buildErr("the Dockerfile (%s) must be within the build context", opts.Dockerfile)
	}
	bctx, err := openContext(opts.ContextDir, df)
	if err != nil {
		return "", buildErr("%v", err)
	}
	fi := bctx.dockerfile
	if fi == nil || !fi.Mode().IsRegular() {
		return "", buildErr("Cannot locate specified Dockerfile: %s", opts.Dockerfile)
	}
	if fi.Size() > maxDockerfile {
		return "", buildErr("the Dockerfile %s is larger than %d MiB", opts.Dockerfile, maxDockerfile>>20)
	}
	f, err := os.Open(filepath.Join(opts.ContextDir, df))
	if err != nil {
		return "", buildErr("read %s: %v", opts.Dockerfile, err)
	}
	res, err := parser.Parse(io.LimitReader(f, maxDockerfile))
	f.Close()
	if err != nil {
		return "", buildErr("dockerfile parse error: %v", err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return "", buildErr("dockerfile parse error: %v", err)
	}
	if len(stages) == 0 {
		return "", buildErr("the Dockerfile has no FROM instruction")
	}
	run := &buildRun{b: b, opts: opts, ctx: bctx, lex: shell.NewLex(res.EscapeToken), out: opts.Out,
		stageImages: map[string]images.Image{}, usedArgs: map[string]bool{}}
	if run.out == nil {
		run.out = io.Discard
	}
	if err := run.metaArgs(metaArgs); err != nil {
		return "", err
	}
	needed, err := run.neededStages(stages)
	if err != nil {
		return "", err
	}
	if len(opts.Labels) > 0 {
		run.total = 1 // the LABEL step of --label
	}
	for _, i := range needed {
		run.total += 1 + len(stages[i].Commands)
	}
	var last images.Image
	for _, i := range needed {
		img, err := run.stage(ctx, i, &stages[i])
		if err != nil {
			return "", err
		}
		run.stageImages[fmt.Sprint(i)] = img
		if stages[i].Name != "" {
			run.stageImages[strings.ToLower(stages[i].Name)] = img
		}
		last = img
	}
	if len(opts.Labels) > 0 {
		if last, err = run.labelStep(ctx, last, opts.Labels); err != nil {
			return "", err
		}
	}
	run.warnUnusedArgs()
	if last.ID == "" {
		return "", buildErr("the build produced no image")
	}
	for _, t := range opts.Tags {
		if err := b.Images.Tag(last.ID, t); err != nil {
			return "", fmt.Errorf("tag %s: %w", t, err)
		}
	}
	return last.ID, nil
}

// neededStages is the stages the target needs, in Dockerfile order: the
// target (the last stage by default), the stages it builds FROM or copies
// --from, and theirs.
func (r *buildRun) neededStages(stages []instructions.Stage) ([]int, error) {
	byName := map[string]int{}
	for i, s := range stages {
		if s.Name != "" {
			byName[strings.ToLower(s.Name)] = i
		}
	}
	target := len(stages) - 1
	if r.opts.Target != "" {
		i, ok := byName[strings.ToLower(r.opts.Target)]
		if !ok {
			return nil, buildErr("failed to reach build target %s in Dockerfile", r.opts.Target)
		}
		target = i
	}
	need := map[int]bool{}
	var visit func(i int)
	visit = func(i int) {
		if need[i] {
			return
		}
		need[i] = true
		refs := []string{r.expandMeta(stages[i].BaseName)}
		for _, c := range stages[i].Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
				refs = append(refs, cp.From)
			}
		}
		for _, ref := range refs {
			if j, ok := byName[strings.ToLower(ref)]; ok && j < i {
				visit(j)
			} else if j, ok := stageIndex(ref, i); ok {
				visit(j)
			}
		}
	}
	visit(target)
	var out []int
	for i := range stages[:target+1] {
		if need[i] {
			out = append(out, i)
		}
	}
	return out, nil
}

// stageIndex reads a COPY --from=N that names an earlier stage by number.
func stageIndex(ref string, before int) (int, bool) {
	var n int
	if _, err := fmt.Sscanf(ref, "%d", &n); err != nil || fmt.Sprint(n) != ref || n < 0 || n >= before {
		return 0, false
	}
	return n, true
}

// buildRun is one build's state across its stages.
type buildRun struct {
	b           *Builder
	opts        Options
	ctx         *buildContext
	lex         *shell.Lex
	out         io.Writer
	step, total int
	meta        map[string]string       // ARGs before the first FROM, with values
	stageImages map[string]images.Image // built stages by name and by index
	usedArgs    map[string]bool         // --build-arg names some ARG declared
}

func (r *buildRun) metaArgs(args []instructions.ArgCommand) error {
	r.meta = map[string]string{}
	for _, a := range args {
		for _, kv := range a.Args {
			v, err := r.argValue(kv, envGetter(r.meta))
			if err != nil {
				return err
			}
			if v != nil {
				r.meta[kv.Key] = *v
			}
		}
	}
	return nil
}

// argValue is an ARG's value: the --build-arg one if given, else its
// default expanded, else none.
func (r *buildRun) argValue(kv instructions.KeyValuePairOptional, env shell.EnvGetter) (*string, error) {
	if v, ok := r.opts.BuildArgs[kv.Key]; ok {
		r.usedArgs[kv.Key] = true
		if v != nil {
			return v, nil
		}
	}
	if kv.Value == nil {
		return nil, nil
	}
	v, _, err := r.lex.ProcessWord(*kv.Value, env)
	if err != nil {
		return nil, buildErr("ARG %s: %v", kv.Key, err)
	}
	return &v, nil
}

func (r *buildRun) expandMeta(word string) string {
	v, _, err := r.lex.ProcessWord(word, envGetter(r.meta))
	if err != nil {
		return word
	}
	return v
}

// warnUnusedArgs says which --build-arg no ARG declared, as Docker.
func (r *buildRun) warnUnusedArgs() {
	var unused []string
	for k := range r.opts.BuildArgs {
		if !r.usedArgs[k] && !predefinedArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(r.out, "[Warning] One or more build-args [%s] were not consumed\n", strings.Join(unused, " "))
	}
}

// predefinedArgs are usable without an ARG (Docker's proxy variables).
var predefinedArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// envGetter is a map as the shell lexer's environment.
type envGetter map[string]string

func (e envGetter) Get(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e envGetter) Keys() []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// dockerConfig reads an image's config with Docker's extensions.
func (r *buildRun) dockerConfig(img images.Image) (dockerspec.DockerOCIImageConfig, error) {
	var cfg dockerspec.DockerOCIImageConfig
	if img.ID == "" {
		return cfg, nil
	}
	_, raw, err := r.b.Images.ConfigOf(img.ID)
	if err != nil {
		return cfg, err
	}
	var full dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &full); err != nil {
		return cfg, fmt.Errorf("config of %s: %w", img.ID, err)
	}
	return full.Config, nil
}
