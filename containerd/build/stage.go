package build

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/oci"
)

// stageState is a stage's image so far and the config its next step
// starts from.
type stageState struct {
	img    images.Image
	cfg    dockerspec.DockerOCIImageConfig
	args   map[string]string // the stage's ARGs with values
	author string
	cmdSet bool // CMD set in this stage (an ENTRYPOINT then keeps it)
}

// env is what variables expand from: the stage's ARGs, overridden by ENV.
func (s *stageState) env() envGetter {
	e := envGetter{}
	for k, v := range s.args {
		e[k] = v
	}
	for _, kv := range s.cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		e[k] = v
	}
	return e
}

func (r *buildRun) printStep(text string) {
	r.step++
	fmt.Fprintf(r.out, "Step %d/%d : %s\n", r.step, r.total, text)
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// stage builds stage i and returns its image.
func (r *buildRun) stage(ctx context.Context, i int, st *instructions.Stage) (images.Image, error) {
	r.printStep(strings.TrimSpace(st.SourceCode))
	base := r.expandMeta(st.BaseName)
	s := &stageState{args: map[string]string{}}
	var err error
	if s.img, err = r.baseImage(ctx, base, i); err != nil {
		return images.Image{}, err
	}
	if s.cfg, err = r.dockerConfig(s.img); err != nil {
		return images.Image{}, err
	}
	// As dockerd's builder: a stage whose base sets no PATH (scratch, an
	// imported rootfs) has the default one, which its RUN steps and the
	// image it makes keep.
	if !slices.ContainsFunc(s.cfg.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		s.cfg.Env = append(s.cfg.Env, "PATH="+oci.DefaultPath)
	}
	if s.img.ID != "" {
		fmt.Fprintf(r.out, " ---> %s\n", short(s.img.ID))
	}
	if triggers := s.cfg.OnBuild; len(triggers) > 0 {
		s.cfg.OnBuild = nil
		fmt.Fprintf(r.out, "# Executing %d build trigger", len(triggers))
		if len(triggers) > 1 {
			fmt.Fprint(r.out, "s")
		}
		fmt.Fprintln(r.out)
		for _, t := range triggers {
			res, err := parser.Parse(strings.NewReader(t))
			if err != nil || len(res.AST.Children) != 1 {
				return images.Image{}, buildErr("ONBUILD trigger %q: %v", t, err)
			}
			cmd, err := instructions.ParseCommand(res.AST.Children[0])
			if err != nil {
				return images.Image{}, buildErr("ONBUILD trigger %q: %v", t, err)
			}
			if err := r.dispatch(ctx, s, cmd); err != nil {
				return images.Image{}, err
			}
		}
	}
	for _, cmd := range st.Commands {
		text := cmd.Name()
		if sc, ok := cmd.(fmt.Stringer); ok {
			text = sc.String()
		}
		r.printStep(text)
		if err := r.dispatch(ctx, s, cmd); err != nil {
			return images.Image{}, err
		}
	}
	return s.img, nil
}

// baseImage is FROM's image: an earlier stage, scratch (none), a local
// image or one pulled.
func (r *buildRun) baseImage(ctx context.Context, base string, stage int) (images.Image, error) {
	if img, ok := r.stageImages[strings.ToLower(base)]; ok {
		return img, nil
	}
	if strings.EqualFold(base, "scratch") {
		return images.Image{}, nil
	}
	if _, ok := stageIndex(base, stage); ok {
		return r.stageImages[base], nil
	}
	return r.image(ctx, base)
}

// image finds ref here, pulling it if missing (always with --pull).
func (r *buildRun) image(ctx context.Context, ref string) (images.Image, error) {
	if !r.opts.Pull {
		if img, err := r.b.Images.Get(ref); err == nil {
			return img, nil
		}
	}
	if r.b.Pull == nil {
		return images.Image{}, buildErr("image %s not found", ref)
	}
	img, err := r.b.Pull(ctx, ref, r.out)
	if err != nil {
		return images.Image{}, buildErr("pull %s: %v", ref, err)
	}
	return img, nil
}

// dispatch runs one instruction on s.
func (r *buildRun) dispatch(ctx context.Context, s *stageState, cmd instructions.Command) error {
	if _, isArg := cmd.(*instructions.ArgCommand); !isArg {
		if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
			env := s.env()
			err := ex.Expand(func(word string) (string, error) {
				v, _, err := r.lex.ProcessWord(word, env)
				return v, err
			})
			if err != nil {
				return buildErr("%s: %v", cmd.Name(), err)
			}
		}
	}
	c := &s.cfg
	switch cmd := cmd.(type) {
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range cmd.Env {
			c.Env = setEnv(c.Env, kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return r.commitMeta(ctx, s, "ENV "+strings.Join(parts, " "))
	case *instructions.ArgCommand:
		var parts []string
		for _, kv := range cmd.Args {
			v, err := r.argValue(kv, s.env())
			if err != nil {
				return err
			}
			if v == nil {
				v = ptr(r.meta[kv.Key])
				if _, ok := r.meta[kv.Key]; !ok {
					parts = append(parts, kv.Key)
					continue
				}
			}
			s.args[kv.Key] = *v
			parts = append(parts, kv.Key+"="+*v)
		}
		return r.commitMeta(ctx, s, "ARG "+strings.Join(parts, " "))
	case *instructions.LabelCommand:
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		var parts []string
		for _, kv := range cmd.Labels {
			c.Labels[kv.Key] = kv.Value
			parts = append(parts, strconv.Quote(kv.Key)+"="+strconv.Quote(kv.Value))
		}
		return r.commitMeta(ctx, s, "LABEL "+strings.Join(parts, " "))
	case *instructions.MaintainerCommand:
		s.author = cmd.Maintainer
		return r.commitMeta(ctx, s, "MAINTAINER "+cmd.Maintainer)
	case *instructions.WorkdirCommand:
		dir := cmd.Path
		if !path.IsAbs(dir) {
			dir = path.Join("/", c.WorkingDir, dir)
		}
		c.WorkingDir = path.Clean(dir)
		return r.commitMeta(ctx, s, "WORKDIR "+c.WorkingDir)
	case *instructions.UserCommand:
		c.User = cmd.User
		return r.commitMeta(ctx, s, "USER "+cmd.User)
	case *instructions.ExposeCommand:
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		ports, err := exposedPorts(cmd.Ports)
		if err != nil {
			return err
		}
		for _, p := range ports {
			c.ExposedPorts[p] = struct{}{}
		}
		return r.commitMeta(ctx, s, "EXPOSE "+strings.Join(ports, " "))
	case *instructions.VolumeCommand:
		if c.Volumes == nil {
			c.Volumes = map[string]struct{}{}
		}
		for _, v := range cmd.Volumes {
			if strings.TrimSpace(v) == "" {
				return buildErr("VOLUME specified can not be an empty string")
			}
			c.Volumes[v] = struct{}{}
		}
		return r.commitMeta(ctx, s, "VOLUME "+fmt.Sprint(cmd.Volumes))
	case *instructions.StopSignalCommand:
		c.StopSignal = cmd.Signal
		return r.commitMeta(ctx, s, "STOPSIGNAL "+cmd.Signal)
	case *instructions.CmdCommand:
		c.Cmd = r.argv(s, cmd.ShellDependantCmdLine)
		s.cmdSet = true
		return r.commitMeta(ctx, s, "CMD "+jsonArgs(c.Cmd))
	case *instructions.EntrypointCommand:
		c.Entrypoint = r.argv(s, cmd.ShellDependantCmdLine)
		if !s.cmdSet {
			c.Cmd = nil
		}
		return r.commitMeta(ctx, s, "ENTRYPOINT "+jsonArgs(c.Entrypoint))
	case *instructions.HealthCheckCommand:
		c.Healthcheck = cmd.Health
		return r.commitMeta(ctx, s, "HEALTHCHECK "+jsonArgs(cmd.Health.Test))
	case *instructions.ShellCommand:
		c.Shell = cmd.Shell
		return r.commitMeta(ctx, s, "SHELL "+jsonArgs(cmd.Shell))
	case *instructions.OnbuildCommand:
		c.OnBuild = append(c.OnBuild, cmd.Expression)
		return r.commitMeta(ctx, s, "ONBUILD "+cmd.Expression)
	case *instructions.RunCommand:
		if len(cmd.FlagsUsed) > 0 {
			return buildErr("RUN --%s needs BuildKit; the classic builder has no RUN flags", cmd.FlagsUsed[0])
		}
		if len(cmd.Files) > 0 {
			return buildErr("RUN with a here-document needs BuildKit")
		}
		return r.runStep(ctx, s, cmd)
	case *instructions.CopyCommand:
		if cmd.Link || cmd.Parents || len(cmd.ExcludePatterns) > 0 || len(cmd.SourceContents) > 0 {
			return buildErr("COPY --link, --parents, --exclude and here-documents need BuildKit")
		}
		return r.copyStep(ctx, s, "COPY", cmd.SourcesAndDest, cmd.From, cmd.Chown, cmd.Chmod, false)
	case *instructions.AddCommand:
		if cmd.Link || len(cmd.ExcludePatterns) > 0 || len(cmd.SourceContents) > 0 || cmd.Checksum != "" || cmd.KeepGitDir != nil || cmd.Unpack != nil {
			return buildErr("ADD --link, --exclude, --checksum, --keep-git-dir, --unpack and here-documents need BuildKit")
		}
		for _, src := range cmd.SourcePaths {
			if strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
				return buildErr("ADD %s: remote sources are not supported; download them in a RUN step", src)
			}
		}
		return r.copyStep(ctx, s, "ADD", cmd.SourcesAndDest, "", cmd.Chown, cmd.Chmod, true)
	}
	return buildErr("the classic builder does not support the %s instruction", strings.ToUpper(cmd.Name()))
}

func ptr[T any](v T) *T { return &v }

// argv is a command line in its form: exec form as is, shell form through
// the stage's SHELL (default /bin/sh -c).
func (r *buildRun) argv(s *stageState, cl instructions.ShellDependantCmdLine) []string {
	if !cl.PrependShell {
		return append([]string(nil), cl.CmdLine...)
	}
	sh := s.cfg.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string(nil), sh...), strings.Join(cl.CmdLine, " "))
}

func jsonArgs(a []string) string {
	b, _ := json.Marshal(a)
	return string(b)
}

// setEnv sets k=v in env, replacing an earlier k.
func setEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); name == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// exposedPorts reads EXPOSE's ports ("80", "80/udp", "8000-8002/tcp").
func exposedPorts(specs []string) ([]string, error) {
	var out []string
	for _, sp := range specs {
		port, proto, _ := strings.Cut(sp, "/")
		if proto == "" {
			proto = "tcp"
		}
		proto = strings.ToLower(proto)
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			return nil, buildErr("EXPOSE %s: invalid protocol %q", sp, proto)
		}
		lo, hi, isRange := strings.Cut(port, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a {
			return nil, buildErr("EXPOSE %s: invalid port", sp)
		}
		for p := a; p <= b; p++ {
			out = append(out, fmt.Sprintf("%d/%s", p, proto))
		}
	}
	return out, nil
}

// labelStep applies `--label`s as a last LABEL step, as the classic builder.
func (r *buildRun) labelStep(ctx context.Context, img images.Image, labels map[string]string) (images.Image, error) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, strconv.Quote(k)+"="+strconv.Quote(labels[k]))
	}
	r.printStep("LABEL " + strings.Join(parts, " "))
	cfg, err := r.dockerConfig(img)
	if err != nil {
		return images.Image{}, err
	}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	for k, v := range labels {
		cfg.Labels[k] = v
	}
	s := &stageState{img: img, cfg: cfg}
	if err := r.commitMeta(ctx, s, "LABEL "+strings.Join(parts, " ")); err != nil {
		return images.Image{}, err
	}
	return s.img, nil
}

// commitMeta makes the image of a step that changes only the config.
func (r *buildRun) commitMeta(ctx context.Context, s *stageState, what string) error {
	createdBy := "/bin/sh -c #(nop)  " + what
	if img, ok := r.cached(s, createdBy); ok {
		s.img = img
		return nil
	}
	img, err := r.b.Images.CommitWithOptions(ctx, "", s.img, images.CommitOptions{
		Config: s.cfg.ImageConfig, Docker: &s.cfg.DockerOCIImageConfigExt,
		CreatedBy: createdBy, Author: s.author, EmptyLayer: true,
	})
	if err != nil {
		return fmt.Errorf("commit step %d: %w", r.step, err)
	}
	fmt.Fprintf(r.out, " ---> %s\n", short(img.ID))
	s.img = img
	return nil
}

// cached finds the image a step made before from the same parent, with
// the same instruction and the same resulting config. The newest wins.
func (r *buildRun) cached(s *stageState, createdBy string) (images.Image, bool) {
	if r.opts.NoCache {
		return images.Image{}, false
	}
	all, err := r.b.Images.List()
	if err != nil {
		return images.Image{}, false
	}
	want, _ := json.Marshal(s.cfg)
	var best images.Image
	for _, img := range all {
		h := img.Config.History
		if img.Parent != s.img.ID || len(h) != len(s.img.Config.History)+1 || h[len(h)-1].CreatedBy != createdBy {
			continue
		}
		if s.img.ID == "" && img.Parent == "" && len(s.img.Config.History) != 0 {
			continue
		}
		cfg, err := r.dockerConfig(img)
		if err != nil {
			continue
		}
		if got, _ := json.Marshal(cfg); string(got) != string(want) {
			continue
		}
		if best.ID == "" || img.Created.After(best.Created) {
			best = img
		}
	}
	if best.ID == "" {
		return images.Image{}, false
	}
	fmt.Fprintf(r.out, " ---> Using cache\n ---> %s\n", short(best.ID))
	return best, true
}

// hasLayers tells whether an image has a filesystem to run or copy into.
func hasLayers(img images.Image) bool {
	return img.ID != "" && len(img.Config.RootFS.DiffIDs) > 0
}
