package build

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/moby/api/pkg/stdcopy"

	"github.com/shoal-project/shoal/containerd/archive"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
)

// container is a step's container, removed when the step ends whatever
// happened (the classic builder's --force-rm): a failed build leaves none.
type container struct {
	r  *buildRun
	id string
}

func (r *buildRun) newContainer(ctx context.Context, img images.Image, cfg containers.Config) (*container, error) {
	if !hasLayers(img) {
		return nil, buildErr("step %d needs a filesystem, and the image so far has none (FROM scratch without COPY)", r.step)
	}
	cfg.Image = img.ID
	if cfg.Entrypoint == nil {
		// COPY's containers are never started, only their filesystem is
		// used; the engine wants a command all the same.
		cfg.Entrypoint = []string{"/.shoal-build-copy"}
	}
	c, err := r.b.Containers.Create(ctx, "", cfg)
	if err != nil {
		return nil, fmt.Errorf("step %d: create container: %w", r.step, err)
	}
	return &container{r: r, id: c.ID}, nil
}

func (c *container) remove(announce bool) {
	if c == nil {
		return
	}
	if announce {
		fmt.Fprintf(c.r.out, "Removing intermediate container %s\n", short(c.id))
	}
	if err := c.r.b.Containers.Remove(context.Background(), c.id, true); err != nil {
		fmt.Fprintf(c.r.out, "[Warning] remove intermediate container %s: %v\n", short(c.id), err)
	}
}

// stat is the statFunc of the image in container c (nil: an image with no
// layers, where only the root exists).
func (c *container) stat(p string) (bool, bool, error) {
	if c == nil {
		return p == "/", p == "/", nil
	}
	ps, err := c.r.b.Containers.StatPath(c.id, p)
	if errors.Is(err, containers.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return true, ps.Mode.IsDir(), nil
}

// runStep runs RUN in a container of the stage's image and commits its
// changes. Its output goes to the build's output as it comes.
func (r *buildRun) runStep(ctx context.Context, s *stageState, cmd *instructions.RunCommand) error {
	argv := r.argv(s, cmd.ShellDependantCmdLine)
	// The ARGs in scope reach RUN as environment (ENV wins) and are part of
	// its cache key, as the classic builder's "|N K=V" prefix.
	env := append([]string(nil), s.cfg.Env...)
	var argKV []string
	for _, k := range sortedKeys(s.args) {
		argKV = append(argKV, k+"="+s.args[k])
		if !hasEnv(env, k) {
			env = append(env, k+"="+s.args[k])
		}
	}
	createdBy := strings.Join(argv, " ")
	if len(argKV) > 0 {
		createdBy = "|" + strconv.Itoa(len(argKV)) + " " + strings.Join(argKV, " ") + " " + createdBy
	}
	if img, ok := r.cached(s, createdBy); ok {
		s.img = img
		return nil
	}
	c, err := r.newContainer(ctx, s.img, containers.Config{
		Entrypoint: argv, Env: env, User: s.cfg.User, WorkingDir: s.cfg.WorkingDir, NetworkMode: r.opts.NetworkMode,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(r.out, " ---> Running in %s\n", short(c.id))
	code, err := c.run(ctx)
	if err == nil && code != 0 {
		err = buildErr("The command '%s' returned a non-zero code: %d", strings.Join(argv, " "), code)
	} else if err != nil {
		err = fmt.Errorf("step %d: %w", r.step, err)
	}
	if err == nil {
		err = r.commitLayer(ctx, s, c, createdBy)
	}
	if err == nil && r.opts.KeepContainers {
		return nil
	}
	c.remove(true)
	return err
}

// run starts the container with its output attached and waits for it.
func (c *container) run(ctx context.Context) (int, error) {
	pr, pw := io.Pipe()
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(c.r.out, stderrWriter{c.r.out}, pr)
		pr.CloseWithError(err)
		copied <- err
	}()
	registered := make(chan struct{})
	attached := make(chan error, 1)
	go func() {
		err := c.r.b.Containers.AttachRegistered(ctx, c.id, nil, pw, func() { close(registered) })
		pw.CloseWithError(err)
		attached <- err
	}()
	select {
	case <-registered:
	case err := <-attached:
		return 0, fmt.Errorf("attach: %w", err)
	}
	if err := c.r.b.Containers.Start(ctx, c.id); err != nil {
		pw.Close()
		return 0, fmt.Errorf("start: %w", err)
	}
	<-attached
	<-copied
	st, err := c.r.b.Containers.Wait(ctx, c.id, containers.WaitNotRunning, nil)
	if err != nil {
		return 0, fmt.Errorf("wait: %w", err)
	}
	return st.ExitCode, nil
}

// stderrWriter passes a step's stderr on between the terminal codes for
// red and back, each write whole, as dockerd's classic builder does
// (streamformatter's stderr writer): the docker CLI shows it red, and
// docker-py's clients see the same stream messages as from dockerd.
type stderrWriter struct{ w io.Writer }

func (s stderrWriter) Write(p []byte) (int, error) {
	if _, err := s.w.Write([]byte("\x1b[91m" + string(p) + "\x1b[0m")); err != nil {
		return 0, err
	}
	return len(p), nil
}

// commitLayer makes the step's image of the container's changes.
func (r *buildRun) commitLayer(ctx context.Context, s *stageState, c *container, createdBy string) error {
	rfs, err := r.b.Images.RootfsOf(c.id)
	if err != nil {
		return err
	}
	return r.commitDir(ctx, s, rfs.Upper, createdBy)
}

func (r *buildRun) commitDir(ctx context.Context, s *stageState, upper, createdBy string) error {
	img, err := r.b.Images.CommitWithOptions(ctx, upper, s.img, images.CommitOptions{
		Config: s.cfg.ImageConfig, Docker: &s.cfg.DockerOCIImageConfigExt,
		CreatedBy: createdBy, Author: s.author,
	})
	if err != nil {
		return fmt.Errorf("step %d: commit: %w", r.step, err)
	}
	fmt.Fprintf(r.out, " ---> %s\n", short(img.ID))
	s.img = img
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); name == k {
			return true
		}
	}
	return false
}

// copyStep runs COPY or ADD: from the context, or (COPY --from) from a
// stage's or an image's filesystem.
func (r *buildRun) copyStep(ctx context.Context, s *stageState, name string, sd instructions.SourcesAndDest, from, chown, chmod string, unpack bool) error {
	dest := sd.DestPath
	if !path.IsAbs(dest) {
		dir := s.cfg.WorkingDir
		if dir == "" {
			dir = "/"
		}
		trail := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
		dest = path.Join(dir, dest)
		if trail {
			dest += "/"
		}
	}
	var mode fs.FileMode
	if chmod != "" {
		m, err := strconv.ParseUint(chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return buildErr("%s --chmod=%s: not an octal mode", name, chmod)
		}
		mode = fs.FileMode(m)
	}
	var c *container
	if hasLayers(s.img) {
		var err error
		if c, err = r.newContainer(ctx, s.img, containers.Config{}); err != nil {
			return err
		}
		defer c.remove(false)
	}
	own, err := c.owner(ctx, chown)
	if err != nil {
		return err
	}
	if from != "" {
		return r.copyFrom(ctx, s, c, sd.SourcePaths, dest, from, own, mode)
	}
	var srcs []source
	many := len(sd.SourcePaths) > 1
	for _, p := range sd.SourcePaths {
		m, err := r.ctx.match(p)
		if err != nil {
			return buildErr("%v", strings.Replace(err.Error(), "COPY", name, 1))
		}
		many = many || strings.ContainsAny(p, "*?[")
		srcs = append(srcs, m...)
	}
	plan, err := r.ctx.planCopy(srcs, dest, many, unpack, c.stat)
	if err != nil {
		return buildErr("%s: %v", name, err)
	}
	sum, err := r.ctx.digest(plan)
	if err != nil {
		return buildErr("%v", err)
	}
	kind := "file"
	if len(srcs) > 1 || srcs[0].fi.IsDir() {
		kind = "dir"
	}
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) %s %s%s:%s in %s ", name, ownerFlag(chown, own), kind, sum, dest)
	if chmod != "" {
		createdBy += "--chmod=" + chmod + " "
	}
	if img, ok := r.cached(s, createdBy); ok {
		s.img = img
		return nil
	}
	return r.unpack(ctx, s, c, plan.point, createdBy, func(w io.Writer) error {
		return r.ctx.writeTar(ctx, plan, own, mode, w)
	})
}

func ownerFlag(spec string, own owner) string {
	if spec == "" {
		return ""
	}
	return fmt.Sprintf("--chown=%d:%d ", own.uid, own.gid)
}

// unpack writes a tar (from write) into the image at point and commits the
// result: into the step's container, or for an image without layers into
// a fresh directory that becomes the first layer.
func (r *buildRun) unpack(ctx context.Context, s *stageState, c *container, point, createdBy string, write func(io.Writer) error) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	defer pr.Close()
	if c != nil {
		if err := r.b.Containers.ExtractToDir(ctx, c.id, point, pr); err != nil {
			return buildErr("step %d: %v", r.step, err)
		}
		return r.commitLayer(ctx, s, c, createdBy)
	}
	dir, err := os.MkdirTemp("", "shoal-build-layer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := archive.Apply(ctx, dir, pr, archive.ApplyOptions{}); err != nil {
		return buildErr("step %d: %v", r.step, err)
	}
	return r.commitDir(ctx, s, dir, createdBy)
}

// owner resolves COPY --chown: numbers, or names from the image's
// /etc/passwd and /etc/group.
func (c *container) owner(ctx context.Context, spec string) (owner, error) {
	if spec == "" {
		return owner{}, nil
	}
	u, g, hasGroup := strings.Cut(spec, ":")
	uid, err := c.lookupID(ctx, "/etc/passwd", u)
	if err != nil {
		return owner{}, err
	}
	gid := uid
	if hasGroup {
		if gid, err = c.lookupID(ctx, "/etc/group", g); err != nil {
			return owner{}, err
		}
	}
	return owner{uid: uid, gid: gid}, nil
}

func (c *container) lookupID(ctx context.Context, file, name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	if c == nil {
		return 0, buildErr("--chown=%s: no %s to look the name up in", name, file)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(c.r.b.Containers.ArchivePath(ctx, c.id, file, pw)) }()
	defer pr.Close()
	tr := tar.NewReader(pr)
	if _, err := tr.Next(); err != nil {
		return 0, buildErr("--chown=%s: read %s: %v", name, file, err)
	}
	sc := bufio.NewScanner(tr)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 3 && f[0] == name {
			if n, err := strconv.Atoi(f[2]); err == nil {
				return n, nil
			}
		}
	}
	return 0, buildErr("unable to convert uid/gid chown string to host mapping: no %s entry for %q", path.Base(file), name)
}

// copyFrom runs COPY --from: each source's tar from a container of the
// other stage's or image's filesystem, renamed to its destination.
func (r *buildRun) copyFrom(ctx context.Context, s *stageState, c *container, srcPaths []string, dest, from string, own owner, mode fs.FileMode) error {
	img, ok := r.stageImages[strings.ToLower(from)]
	if !ok {
		var err error
		if img, err = r.image(ctx, from); err != nil {
			return err
		}
	}
	src, err := r.newContainer(ctx, img, containers.Config{})
	if err != nil {
		return err
	}
	defer src.remove(false)
	many := len(srcPaths) > 1
	if many && !strings.HasSuffix(dest, "/") {
		return buildErr("When using COPY with more than one source file, the destination must be a directory and end with a /")
	}
	// The tar is built once into a file: its digest is the cache key.
	tmp, err := os.CreateTemp("", "shoal-build-copy-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(tmp, h))
	destDir := dest
	var point string
	for _, p := range srcPaths {
		if strings.ContainsAny(p, "*?[") {
			return buildErr("COPY --from=%s %s: wildcards in COPY --from are not supported", from, p)
		}
		p = path.Join("/", p)
		ps, err := r.b.Containers.StatPath(src.id, p)
		if err != nil {
			return buildErr("COPY failed: stat %s in %s: %v", p, from, err)
		}
		exists, isDir, err := c.stat(path.Clean(dest))
		if err != nil {
			return err
		}
		// A file onto a path that is not a directory takes that name.
		target, rename := dest, ""
		if !ps.Mode.IsDir() && !strings.HasSuffix(dest, "/") && !(exists && isDir) {
			target, rename = path.Dir(path.Clean(dest)), path.Base(dest)
		}
		target = path.Clean(target)
		pt, missing, err := existingAncestor(target, c.stat)
		if err != nil {
			return buildErr("COPY: %v", err)
		}
		if point != "" && pt != point {
			return buildErr("COPY --from with several sources: their destinations must share a directory")
		}
		point = pt
		destDir = strings.TrimPrefix(strings.TrimPrefix(target, point), "/")
		for _, d := range missing {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Uid: own.uid, Gid: own.gid}); err != nil {
				return err
			}
		}
		if err := r.repack(ctx, src.id, p, ps.Mode.IsDir(), destDir, rename, own, mode, tw); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) COPY --from=%s %s:%s in %s ", from, short(img.ID), hex.EncodeToString(h.Sum(nil)), dest)
	if cimg, ok := r.cached(s, createdBy); ok {
		s.img = cimg
		return nil
	}
	return r.unpack(ctx, s, c, point, createdBy, func(w io.Writer) error {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		_, err := io.Copy(w, tmp)
		return err
	})
}

// repack copies the tar of p in container id into tw: a directory's
// content under destDir, a file as destDir/rename (or its own name).
func (r *buildRun) repack(ctx context.Context, id, p string, isDir bool, destDir, rename string, own owner, mode fs.FileMode, tw *tar.Writer) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(r.b.Containers.ArchivePath(ctx, id, p, pw)) }()
	defer pr.Close()
	tr := tar.NewReader(pr)
	top := path.Base(p)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return buildErr("COPY --from %s: %v", p, err)
		}
		name, err := archive.CleanName(hdr.Name)
		if err != nil {
			return buildErr("COPY --from %s: %v", p, err)
		}
		rest := strings.TrimPrefix(strings.TrimPrefix(name, top), "/")
		switch {
		case isDir && rest == "":
			continue // the directory itself: its content goes into destDir
		case isDir:
			hdr.Name = path.Join(destDir, rest)
		case rename != "":
			hdr.Name = path.Join(destDir, rename)
		default:
			hdr.Name = path.Join(destDir, top)
		}
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			continue // a hard link's target may not be copied: skip it
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = own.uid, own.gid, "", ""
		if mode != 0 && hdr.Typeflag != tar.TypeSymlink {
			hdr.Mode = int64(mode)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}
