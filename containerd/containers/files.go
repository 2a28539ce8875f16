package containers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/archive"
	"github.com/shoal-project/shoal/containerd/images"
)

// PathStat describes a path in a container, as the X-Docker-Container-Path-Stat header.
type PathStat struct {
	Name       string      `json:"name"`
	Size       int64       `json:"size"`
	Mode       os.FileMode `json:"mode"`
	Mtime      time.Time   `json:"mtime"`
	LinkTarget string      `json:"linkTarget"`
}

// hostPath resolves a path of the container to the host, inside its mounted rootfs.
func (e *Engine) hostPath(idOrName, path string) (string, Container, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return "", c, err
	}
	root, err := e.mountRootfs(c.ID)
	if err != nil {
		return "", c, err
	}
	p, err := archive.ResolveInRoot(root, path)
	if err != nil {
		return "", c, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	return p, c, nil
}

// StatPath describes a path in the container.
func (e *Engine) StatPath(idOrName, path string) (PathStat, error) {
	p, _, err := e.hostPath(idOrName, path)
	if err != nil {
		return PathStat{}, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return PathStat{}, fmt.Errorf("%w: Could not find the file %s in container %s", ErrNotFound, path, idOrName)
	}
	st := PathStat{Name: filepath.Base(path), Size: fi.Size(), Mode: fi.Mode(), Mtime: fi.ModTime()}
	if fi.Mode()&os.ModeSymlink != 0 {
		st.LinkTarget, _ = os.Readlink(p)
	}
	return st, nil
}

// ArchivePath writes a tar of path (its top entry named after its base name) to w.
func (e *Engine) ArchivePath(ctx context.Context, idOrName, path string, w io.Writer) error {
	p, _, err := e.hostPath(idOrName, path)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("%w: Could not find the file %s in container %s", ErrNotFound, path, idOrName)
	}
	if !fi.IsDir() {
		return archive.TarDir(ctx, p, w)
	}
	// TarDir names entries relative to the directory; docker cp puts them under its name.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.TarDir(ctx, p, pw)) }()
	defer pr.Close()
	base := filepath.Base(filepath.Clean("/" + path))
	if base == "/" {
		base = "."
	}
	tr, tw := tar.NewReader(pr), tar.NewWriter(w)
	// The directory itself comes first, as in docker cp's archives, so that
	// its mode and owner travel too.
	top, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	top.Name = base + "/"
	if err := tw.WriteHeader(top); err != nil {
		return err
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(h.Name, "./")
		if name == "" || name == "." || name == "/" {
			continue
		}
		h.Name = base + "/" + name
		if h.Typeflag == tar.TypeLink {
			h.Linkname = base + "/" + strings.TrimPrefix(h.Linkname, "./")
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ExtractToDir unpacks a tar into the directory path of the container, safely
// (nothing lands outside the container's rootfs).
func (e *Engine) ExtractToDir(ctx context.Context, idOrName, path string, r io.Reader) error {
	p, _, err := e.hostPath(idOrName, path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%w: Could not find the file %s in container %s", ErrNotFound, path, idOrName)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: extraction point is not a directory", ErrInvalidArgument)
	}
	if _, err := archive.Apply(ctx, p, r, archive.ApplyOptions{Whiteouts: archive.WhiteoutDelete}); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	return nil
}

// CommitOptions are the commit's metadata.
type CommitOptions struct {
	Ref, Comment, Author string
}

// Commit makes a new image of the container's changes on top of its image.
func (e *Engine) Commit(ctx context.Context, idOrName string, opts CommitOptions) (images.Image, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return images.Image{}, err
	}
	parent, err := e.opts.Images.Get(c.ImageID)
	if err != nil {
		return images.Image{}, err
	}
	rfs, err := e.opts.Images.RootfsOf(c.ID)
	if err != nil {
		return images.Image{}, err
	}
	cfg := parent.Config.Config
	cfg.Env = mergeEnv(cfg.Env, c.Config.Env)
	if c.Config.Cmd != nil {
		cfg.Cmd = c.Config.Cmd
	}
	if c.Config.Entrypoint != nil {
		cfg.Entrypoint = c.Config.Entrypoint
	}
	if c.Config.WorkingDir != "" {
		cfg.WorkingDir = c.Config.WorkingDir
	}
	if c.Config.User != "" {
		cfg.User = c.Config.User
	}
	return e.opts.Images.Commit(ctx, rfs.Upper, parent, ocispec.ImageConfig(cfg), opts.Ref, opts.Comment, opts.Author)
}

// TopRow is one process of Top, in ps -ef's columns.
type TopRow []string

// TopTitles are Top's columns.
var TopTitles = []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}

// Top lists the processes of a running container.
func (e *Engine) Top(idOrName string) ([]TopRow, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return nil, err
	}
	if !c.State.Running {
		return nil, fmt.Errorf("%w: Container %s is not running", ErrConflict, c.ID)
	}
	cg, err := e.rt.Cgroup(c.ID)
	if err != nil {
		return nil, fmt.Errorf("top %s: %w", c.ID[:12], err)
	}
	pids, err := cg.Pids()
	if err != nil {
		return nil, fmt.Errorf("top %s: %w", c.ID[:12], err)
	}
	var rows []TopRow
	for _, pid := range pids {
		if row, ok := procRow(pid); ok {
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func procRow(pid int) (TopRow, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(stat)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return nil, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 20 {
		return nil, false
	}
	ppid := f[1]
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	secs := (utime + stime) / 100
	uid := "?"
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(line, "Uid:") {
				if u := strings.Fields(line); len(u) > 1 {
					uid = u[1]
				}
			}
		}
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	cmdline := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	if cmdline == "" {
		cmdline = "[" + s[strings.IndexByte(s, '(')+1:end] + "]"
	}
	// STIME and C as ps computes them: the start is field 22 (clock ticks
	// since boot, USER_HZ = 100 on Linux), C the CPU share of its lifetime.
	start, cpu := "?", "0"
	if ticks, err := strconv.ParseInt(f[19], 10, 64); err == nil {
		if boot, ok := bootTime(); ok {
			started := boot.Add(time.Duration(ticks) * 10 * time.Millisecond)
			start = started.Local().Format("15:04")
			if life := time.Since(started); life > 0 {
				cpu = strconv.Itoa(int(time.Duration(utime+stime) * 10 * time.Millisecond * 100 / life))
			}
		}
	}
	return TopRow{uid, strconv.Itoa(pid), ppid, cpu, start, "?", fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60), cmdline}, true
}

// bootTime reads btime from /proc/stat.
func bootTime() (time.Time, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(n, 0), err == nil
		}
	}
	return time.Time{}, false
}
