package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client/pkg/jsonmessage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func newImportCommand() *cobra.Command {
	var message string
	var changes []string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] file|- [REPOSITORY[:TAG]]",
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			io := streamsOf(cmd)
			src := io.in
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("open %s: %w", args[0], err)
				}
				defer f.Close()
				src = f
			}
			ref := ""
			if len(args) == 2 {
				ref = args[1]
				// Checked here, sent as given.
				if _, err := parseImageRef(ref); err != nil {
					return err
				}
			}
			resp, err := c.ImageImport(commandContext(cmd), src, ref, message, changes)
			if err != nil {
				return c.apiError(err)
			}
			defer resp.Close()
			return printJSONStream(resp, io.out)
		},
	}
	cmd.Flags().StringVarP(&message, "message", "m", "", "Set commit message for imported image")
	cmd.Flags().VarP((*stringArray)(&changes), "change", "c", "Apply Dockerfile instruction to the created image")
	return cmd
}

// imageRow is one line of `images`; its methods are the --format fields.
type imageRow struct {
	img     image.Summary
	repo    string
	tag     string
	digest  string
	noTrunc bool
	now     time.Time
}

func (r imageRow) ID() string {
	if r.noTrunc {
		return r.img.ID
	}
	return shortID(r.img.ID)
}
func (r imageRow) Repository() string   { return r.repo }
func (r imageRow) Tag() string          { return r.tag }
func (r imageRow) Digest() string       { return r.digest }
func (r imageRow) CreatedSince() string { return humanAgo(time.Unix(r.img.Created, 0), r.now) }
func (r imageRow) CreatedAt() string    { return time.Unix(r.img.Created, 0).String() }
func (r imageRow) Size() string         { return humanSize(r.img.Size) }
func (r imageRow) Containers() string {
	if r.img.Containers < 0 {
		return "N/A"
	}
	return strconv.FormatInt(r.img.Containers, 10)
}
func (r imageRow) MarshalJSON() ([]byte, error) { return rowJSON(r) }

var imageHeaders = map[string]string{
	"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
	"CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
}

const defaultImageFormat = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"

// digestsImageFormat is the table of `images --digests`.
const digestsImageFormat = "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"

// imageRows expands summaries into one row per tag, "<none>" for untagged
// images, newest first; match (a REPOSITORY[:TAG] argument) filters them.
func imageRows(items []image.Summary, match string, noTrunc bool, now time.Time) []imageRow {
	sort.SliceStable(items, func(i, j int) bool { return items[i].Created > items[j].Created })
	var rows []imageRow
	for _, img := range items {
		tags := img.RepoTags
		if len(tags) == 0 {
			// An image known only by digest is listed under its repository, as docker does.
			for _, rd := range img.RepoDigests {
				repo, dgst, _ := strings.Cut(rd, "@")
				if match == "" || refMatches(match, repo, "<none>") {
					rows = append(rows, imageRow{img: img, repo: repo, tag: "<none>", digest: dgst, noTrunc: noTrunc, now: now})
				}
			}
			if match != "" || len(img.RepoDigests) > 0 {
				continue
			}
			rows = append(rows, imageRow{img: img, repo: "<none>", tag: "<none>", digest: "<none>", noTrunc: noTrunc, now: now})
			continue
		}
		for _, t := range tags {
			repo, tag := splitRepoTag(t)
			if match != "" && !refMatches(match, repo, tag) {
				continue
			}
			rows = append(rows, imageRow{img: img, repo: repo, tag: tag, digest: repoDigest(img.RepoDigests, repo), noTrunc: noTrunc, now: now})
		}
	}
	return rows
}

// repoDigest is the digest of repo among an image's RepoDigests, "<none>" if absent.
func repoDigest(repoDigests []string, repo string) string {
	for _, rd := range repoDigests {
		if r, d, ok := strings.Cut(rd, "@"); ok && r == repo {
			return d
		}
	}
	return "<none>"
}

// splitRepoTag splits "host:5000/name:tag" at the last colon after the last
// slash; "<none>" stands in for a missing part.
func splitRepoTag(ref string) (string, string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "<none>"
	}
	repo, tag := ref[:i], ref[i+1:]
	if repo == "" {
		repo = "<none>"
	}
	return repo, tag
}

// refMatches reports whether repo:tag matches a REPOSITORY[:TAG] pattern
// (shell wildcards allowed, as docker's reference filter).
func refMatches(pattern, repo, tag string) bool {
	prepo, ptag := splitRepoTag(pattern)
	match := func(p, s string) bool {
		ok, err := path.Match(p, s)
		return err == nil && ok
	}
	names := []string{repo, strings.TrimPrefix(repo, "docker.io/library/"), strings.TrimPrefix(repo, "library/")}
	for _, n := range names {
		if match(prepo, n) && (ptag == "<none>" || match(ptag, tag)) {
			return true
		}
	}
	return false
}

func newImagesCommand(use string) *cobra.Command {
	var quiet, all, noTrunc, digests bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			f, err := parseFilters(filters)
			if err != nil {
				return err
			}
			// A REPOSITORY[:TAG] argument is matched here rather than sent as
			// a "reference" filter: every daemon lists all images, not every
			// daemon knows that filter.
			match := ""
			if len(args) == 1 {
				match = args[0]
			}
			items, err := c.ImageList(commandContext(cmd), all, f)
			if err != nil {
				return c.apiError(err)
			}
			rows := imageRows(items, match, noTrunc, time.Now())
			out := streamsOf(cmd).out
			if quiet {
				seen := map[string]bool{}
				for _, r := range rows {
					if id := r.ID(); !seen[id] {
						seen[id] = true
						fmt.Fprintln(out, id)
					}
				}
				return nil
			}
			if format == "" {
				format = "table"
			}
			anyRows := make([]any, len(rows))
			for i, r := range rows {
				anyRows[i] = r
			}
			def := defaultImageFormat
			if digests {
				def = digestsImageFormat
			}
			return renderRows(out, parseTableFormat(format, def), imageHeaders, anyRows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	fl.BoolVarP(&all, "all", "a", false, "Show all images (default hides intermediate images)")
	fl.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	fl.BoolVar(&digests, "digests", false, "Show digests")
	fl.StringVar(&format, "format", "", "Format output using a custom template ('table', 'table TEMPLATE' or a Go template)")
	fl.VarP((*stringArray)(&filters), "filter", "f", "Filter output based on conditions provided")
	return cmd
}

// parseFilters turns -f key=value flags into API filters.
func parseFilters(vals []string) (apiclient.Filters, error) {
	f := apiclient.Filters{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("bad format of filter (expected name=value)")
		}
		f.Add(strings.ToLower(strings.TrimSpace(k)), val)
	}
	return f, nil
}

func newRmiCommand(use string) *cobra.Command {
	var force, noPrune bool
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			io := streamsOf(cmd)
			var errs []string
			for _, ref := range args {
				items, err := c.ImageRemove(commandContext(cmd), ref, force, noPrune)
				if err != nil {
					errs = append(errs, c.apiError(err).Error())
					continue
				}
				for _, d := range items {
					if d.Untagged != "" {
						fmt.Fprintln(io.out, "Untagged:", d.Untagged)
					}
					if d.Deleted != "" {
						fmt.Fprintln(io.out, "Deleted:", d.Deleted)
					}
				}
			}
			return joinErrors(errs)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force removal of the image")
	cmd.Flags().BoolVar(&noPrune, "no-prune", false, "Do not delete untagged parents")
	return cmd
}

// joinErrors ends a multi-object command: every failure has its line.
func joinErrors(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return StatusError{Status: strings.Join(errs, "\n"), Code: 1, Lines: true}
}

func newTagCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			source := args[0]
			if _, err := parseAnyImageRef(source); err != nil {
				return fmt.Errorf("error parsing reference: %q is not a valid repository/tag: %w", source, err)
			}
			target, err := parseImageRef(args[1])
			if err != nil {
				return fmt.Errorf("error parsing reference: %q is not a valid repository/tag: %w", args[1], err)
			}
			if target.digest != "" {
				return errors.New("refusing to create a tag with a digest reference")
			}
			target = target.WithDefaultTag()
			return c.apiError(c.ImageTag(commandContext(cmd), source, target.Name(), target.tag))
		},
	}
}

func newSaveCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeArchive(cmd, output, func(c *apiClient) (io.ReadCloser, error) {
				return c.ImageSave(commandContext(cmd), args)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

// writeFileAtomic writes r to path through a temporary file in the same
// directory, so a failed transfer never leaves a truncated archive behind.
func writeFileAtomic(path string, r io.Reader) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("failed to save image: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to save image: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to save image: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("failed to save image: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("failed to save image: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a terminal (save refuses to write a
// binary archive there, as docker does).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newLoadCommand() *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load an image from a tar archive or STDIN",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := streamsOf(cmd)
			src := s.in
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("open %s: %w", input, err)
				}
				defer f.Close()
				src = f
			} else if isTerminal(s.in) {
				return errors.New("requested load from stdin, but stdin is empty")
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			rc, err := c.ImageLoad(commandContext(cmd), src, quiet)
			if err != nil {
				return c.apiError(err)
			}
			defer rc.Close()
			return printJSONStream(rc, s.out)
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "Read from tar archive file, instead of STDIN")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress the load output")
	return cmd
}

// historyRow is one line of `history`.
type historyRow struct {
	h       image.HistoryResponseItem
	noTrunc bool
	human   bool
	now     time.Time
}

func (r historyRow) ID() string {
	if r.h.ID == "" || r.h.ID == "<missing>" {
		return "<missing>"
	}
	if r.noTrunc {
		return r.h.ID
	}
	return shortID(r.h.ID)
}
func (r historyRow) CreatedSince() string {
	if !r.human {
		return time.Unix(r.h.Created, 0).Format(time.RFC3339)
	}
	return humanAgo(time.Unix(r.h.Created, 0), r.now)
}
func (r historyRow) CreatedAt() string { return time.Unix(r.h.Created, 0).Format(time.RFC3339) }
func (r historyRow) CreatedBy() string {
	by := strings.ReplaceAll(r.h.CreatedBy, "\t", " ")
	if !r.noTrunc {
		by = ellipsis(by, 45)
	}
	return by
}
func (r historyRow) Size() string {
	if !r.human {
		return strconv.FormatInt(r.h.Size, 10)
	}
	return humanSize(r.h.Size)
}
func (r historyRow) Comment() string              { return r.h.Comment }
func (r historyRow) MarshalJSON() ([]byte, error) { return rowJSON(r) }

var historyHeaders = map[string]string{
	"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
	"Size": "SIZE", "Comment": "COMMENT",
}

const defaultHistoryFormat = "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"

func newHistoryCommand() *cobra.Command {
	var noTrunc, quiet, human bool
	var format string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			items, err := c.ImageHistory(commandContext(cmd), args[0])
			if err != nil {
				return c.apiError(err)
			}
			out := streamsOf(cmd).out
			now := time.Now()
			var rows []any
			for _, h := range items {
				r := historyRow{h: h, noTrunc: noTrunc, human: human, now: now}
				if quiet {
					fmt.Fprintln(out, r.ID())
					continue
				}
				rows = append(rows, r)
			}
			if quiet {
				return nil
			}
			if format == "" {
				format = "table"
			}
			return renderRows(out, parseTableFormat(format, defaultHistoryFormat), historyHeaders, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	// No -H shorthand (docker has one): -H is the root's --host here.
	fl.BoolVar(&human, "human", true, "Print sizes and dates in human readable format")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

func newImageInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Display detailed information on one or more images",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd, args, format, "image")
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

// inspectImage fetches one image's inspect document, typed and raw.
func inspectImage(c *apiClient, cmd *cobra.Command, ref string) (any, []byte, error) {
	res, raw, err := c.ImageInspect(commandContext(cmd), ref)
	if err != nil {
		return nil, nil, c.apiError(err)
	}
	if !json.Valid(raw) {
		return nil, nil, fmt.Errorf("image inspect %s: daemon sent invalid JSON", ref)
	}
	return res, raw, nil
}

func newPullCommand() *cobra.Command {
	var platform string
	var quiet, all bool
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			out := streamsOf(cmd).out
			if n, err := parseImageRef(args[0]); err == nil && !quiet && !all && n.NameOnly() {
				fmt.Fprintln(out, "Using default tag: latest")
			}
			return pullImageTo(cmd, c, args[0], platform, quiet, all, out)
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "Pull for this platform (os/arch[/variant])")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "Download all tagged images in the repository")
	return cmd
}

// pullImageTo pulls ref through the daemon with the client's credentials
// for its registry, printing docker's output to out (only the name with quiet).
func pullImageTo(cmd *cobra.Command, c *apiClient, ref, platform string, quiet, all bool, out io.Writer) error {
	r, err := parseImageRef(ref)
	if err != nil {
		return err
	}
	if all && !r.NameOnly() {
		return errors.New("tag can't be used with --all-tags/-a")
	}
	if !all {
		r = r.WithDefaultTag()
	}
	auth, err := registryAuthFor(r)
	if err != nil {
		return err
	}
	opts := apiclient.ImagePullOptions{RegistryAuth: auth}
	if !all {
		// A digest, when the name has one, else the tag.
		opts.Tag = r.tag
		if r.digest != "" {
			opts.Tag = r.digest
		}
	}
	if platform != "" {
		p := strings.SplitN(platform, "/", 3)
		if len(p) < 2 {
			return fmt.Errorf("invalid platform %q: want os/arch[/variant]", platform)
		}
		op := ocispec.Platform{OS: p[0], Architecture: p[1]}
		if len(p) == 3 {
			op.Variant = p[2]
		}
		opts.Platform = &op
	}
	resp, err := c.ImagePull(commandContext(cmd), r.Name(), opts)
	if err != nil {
		return c.apiError(err)
	}
	defer resp.Close()
	dst := out
	if quiet {
		dst = io.Discard
	}
	if err := showProgress(resp, dst); err != nil {
		return err
	}
	fmt.Fprintln(out, r.String())
	return nil
}

func newPushCommand() *cobra.Command {
	var quiet, all bool
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				return errors.New("push --all-tags is not supported")
			}
			r, err := parseImageRef(args[0])
			if err != nil {
				return err
			}
			r = r.WithDefaultTag()
			auth, err := registryAuthFor(r)
			if err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if r.digest != "" {
				return errors.New("cannot push a digest reference")
			}
			resp, err := c.ImagePush(commandContext(cmd), r.Name(), r.tag, auth)
			if err != nil {
				return c.apiError(err)
			}
			defer resp.Close()
			out := streamsOf(cmd).out
			if quiet {
				if err := printJSONStream(resp, io.Discard); err != nil {
					return err
				}
				fmt.Fprintln(out, r.String())
				return nil
			}
			return showProgress(resp, out)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "Push all tags (not supported)")
	return cmd
}

// familiarTagged is ref as docker names it in "Unable to find image": the
// familiar name with its tag (busybox:latest).
func familiarTagged(ref string) string {
	r, err := parseImageRef(ref)
	if err != nil {
		return ref
	}
	return r.WithDefaultTag().Familiar()
}

func newImagePruneCommand() *cobra.Command {
	var force, all bool
	var filterArgs []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filterArgs)
			if err != nil {
				return err
			}
			s := streamsOf(cmd)
			question := "WARNING! This will remove all dangling images.\n"
			if all {
				question = "WARNING! This will remove all images without at least one container associated to them.\n"
			}
			if !force && !confirm(s, question) {
				return nil
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			f.Add("dangling", strconv.FormatBool(!all)) // f is this command's own
			res, err := c.ImagePrune(commandContext(cmd), f)
			if err != nil {
				return c.apiError(err)
			}
			var lines []string
			for _, d := range res.ImagesDeleted {
				if d.Untagged != "" {
					lines = append(lines, "untagged: "+d.Untagged)
				}
				if d.Deleted != "" {
					lines = append(lines, "deleted: "+d.Deleted)
				}
			}
			printDeleted(s.out, "Deleted Images:", lines)
			fmt.Fprintln(s.out, "Total reclaimed space:", humanSize(int64(res.SpaceReclaimed)))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	fl.BoolVarP(&all, "all", "a", false, "Remove all unused images, not just dangling ones")
	fl.Var((*stringArray)(&filterArgs), "filter", "Provide filter values (e.g. \"label=<key>=<value>\")")
	return cmd
}

// showProgress prints a pull's or push's progress stream: on a terminal
// with docker's own renderer (a line per layer, progress bars redrawn in
// place), elsewhere as status lines.
func showProgress(r io.Reader, out io.Writer) error {
	if f, ok := out.(*os.File); ok && isTerminal(f) {
		return jsonmessage.DisplayJSONMessagesStream(r, f, f.Fd(), true, nil)
	}
	return printJSONStream(r, out)
}
