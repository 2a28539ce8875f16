package cli

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
)

// newBuildCommand is `build`: the context directory (or a tar, or a
// Dockerfile, on stdin) sent to the daemon's classic builder, its output
// shown as docker shows it.
func newBuildCommand() *cobra.Command {
	var tags, buildArgs, labels []string
	var file, target, network string
	var noCache, pull, quiet, rm, forceRm bool
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH | -",
		Short: "Build an image from a Dockerfile",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := apiclient.ImageBuildOptions{Tags: tags, SuppressOutput: quiet, NoCache: noCache, Remove: rm,
				ForceRemove: forceRm, PullParent: pull, Target: target, NetworkMode: network, BuildArgs: map[string]*string{}, Labels: map[string]string{}}
			for _, a := range buildArgs {
				k, v, ok := strings.Cut(a, "=")
				if k == "" {
					return fmt.Errorf("invalid argument %q for \"--build-arg\" flag: a name is needed", a)
				}
				if !ok {
					// As docker: NAME alone takes the value from the environment.
					if ev, set := os.LookupEnv(k); set {
						opts.BuildArgs[k] = &ev
					} else {
						opts.BuildArgs[k] = nil
					}
					continue
				}
				opts.BuildArgs[k] = &v
			}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				if k == "" {
					return fmt.Errorf("invalid argument %q for \"--label\" flag: a key is needed", l)
				}
				opts.Labels[k] = v
			}
			st := streamsOf(cmd)
			body, df, err := buildContext(args[0], file, st.in)
			if err != nil {
				return err
			}
			defer body.Close()
			opts.Dockerfile = df
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.ImageBuild(commandContext(cmd), body, opts)
			if err != nil {
				return c.apiError(err)
			}
			defer res.Close()
			return printJSONStream(res, st.out)
		},
	}
	fl := cmd.Flags()
	fl.VarP((*stringArray)(&tags), "tag", "t", "Name and optionally a tag in the \"name:tag\" format")
	fl.StringVarP(&file, "file", "f", "", "Name of the Dockerfile (default: \"PATH/Dockerfile\")")
	fl.Var((*stringArray)(&buildArgs), "build-arg", "Set build-time variables")
	fl.Var((*stringArray)(&labels), "label", "Set metadata for an image")
	fl.StringVar(&target, "target", "", "Set the target build stage to build")
	fl.StringVar(&network, "network", "default", "Set the networking mode for the RUN instructions during build (default or none)")
	fl.BoolVar(&noCache, "no-cache", false, "Do not use cache when building the image")
	fl.BoolVar(&pull, "pull", false, "Always attempt to pull a newer version of the image")
	fl.BoolVarP(&quiet, "quiet", "q", false, "Suppress the build output and print image ID on success")
	fl.BoolVar(&rm, "rm", true, "Remove intermediate containers after a successful build")
	fl.BoolVar(&forceRm, "force-rm", false, "Always remove intermediate containers")
	return cmd
}

// buildContext is the tar to send and the Dockerfile's name in it. PATH "-"
// is stdin: a tar (plain or compressed) as is, anything else a Dockerfile
// with an empty context. A directory is sent without what its .dockerignore
// excludes; a Dockerfile outside it is added under a name of its own.
func buildContext(path, file string, stdin io.Reader) (io.ReadCloser, string, error) {
	if path == "-" {
		br := bufio.NewReader(stdin)
		head, _ := br.Peek(512)
		if looksLikeArchive(head) {
			return io.NopCloser(br), file, nil
		}
		df, err := io.ReadAll(io.LimitReader(br, 10<<20))
		if err != nil {
			return nil, "", fmt.Errorf("read the Dockerfile from stdin: %w", err)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df)), Typeflag: tar.TypeReg})
		tw.Write(df)
		tw.Close()
		return io.NopCloser(&buf), "Dockerfile", nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("unable to prepare context: %w", err)
	}
	if !st.IsDir() {
		return nil, "", fmt.Errorf("unable to prepare context: path %q is not a directory", path)
	}
	root, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	df, extra := "Dockerfile", []byte(nil)
	if file != "" {
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, "", err
		}
		if rel, err := filepath.Rel(root, abs); err == nil && !strings.HasPrefix(rel, "..") {
			df = filepath.ToSlash(rel)
		} else {
			if extra, err = os.ReadFile(file); err != nil {
				return nil, "", fmt.Errorf("read the Dockerfile: %w", err)
			}
			var rnd [8]byte
			rand.Read(rnd[:])
			df = ".dockerfile." + hex.EncodeToString(rnd[:])
		}
	}
	var pm *patternmatcher.PatternMatcher
	if f, err := os.Open(filepath.Join(root, ".dockerignore")); err == nil {
		pats, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, "", fmt.Errorf("read .dockerignore: %w", err)
		}
		if pm, err = patternmatcher.New(pats); err != nil {
			return nil, "", fmt.Errorf("read .dockerignore: %w", err)
		}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, root, df, extra, pm)) }()
	return pr, df, nil
}

// looksLikeArchive tells a tar (plain, gzip, bzip2, xz or zstd) from text.
func looksLikeArchive(head []byte) bool {
	for _, magic := range [][]byte{{0x1f, 0x8b}, []byte("BZh"), {0xfd, '7', 'z', 'X', 'Z', 0}, {0x28, 0xb5, 0x2f, 0xfd}} {
		if bytes.HasPrefix(head, magic) {
			return true
		}
	}
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

func writeContext(w io.Writer, root, df string, extra []byte, pm *patternmatcher.PatternMatcher) error {
	tw := tar.NewWriter(w)
	err := writeTree(tw, root, "", true, func(rel string, isDir bool) (bool, bool, error) {
		if rel == "." {
			return true, false, nil
		}
		if pm == nil || rel == ".dockerignore" || rel == df {
			return false, false, nil
		}
		skip, err := pm.MatchesOrParentMatches(rel)
		// A directory left out may still hold entries that an exception
		// ("!dir/keep") brings back: walk it unless nothing can be.
		return skip, skip && isDir && !pm.Exclusions(), err
	})
	if err != nil {
		return fmt.Errorf("send the build context: %w", err)
	}
	if extra != nil {
		if err := tw.WriteHeader(&tar.Header{Name: df, Mode: 0o644, Size: int64(len(extra)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(extra); err != nil {
			return err
		}
	}
	return tw.Close()
}
