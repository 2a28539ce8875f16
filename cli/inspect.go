package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

func newInspectCommand() *cobra.Command {
	var format, kind string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Return low-level information on containers or images",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch kind {
			case "", "container", "image":
			default:
				return fmt.Errorf("%q is not a valid value for --type", kind)
			}
			return runInspect(cmd, args, format, kind)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().StringVar(&kind, "type", "", "Return JSON for specified type (container or image)")
	cmd.Flags().BoolP("size", "s", false, "Display total file sizes if the type is container")
	return cmd
}

func newContainerInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Display detailed information on one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInspect(cmd, args, format, "container")
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolP("size", "s", false, "Display total file sizes")
	return cmd
}

// inspectContainer fetches one container's inspect document, typed and raw.
func inspectContainer(c *apiClient, cmd *cobra.Command, ref string) (any, []byte, error) {
	size, _ := cmd.Flags().GetBool("size") // inspect --size; false where there is no such flag
	ctr, raw, err := c.ContainerInspectWithSize(commandContext(cmd), ref, size)
	if err != nil {
		return nil, nil, c.apiError(err)
	}
	return ctr, raw, nil
}

// runInspect prints every object of args (containers, images, or either
// for kind "") as a JSON array or through --format.
func runInspect(cmd *cobra.Command, args []string, format, kind string) error {
	return inspectEach(cmd, args, format, func(c *apiClient, ref string) (any, []byte, error) {
		return inspectOne(c, cmd, ref, kind)
	}, nil)
}

// inspectFetch fetches one object's inspect document: typed for --format
// and --pretty, raw for the JSON array.
type inspectFetch func(c *apiClient, ref string) (typed any, raw []byte, err error)

// inspectEach is every inspect command: each object of args printed as one
// JSON array, through --format, or by pretty (if not nil). An object that
// cannot be fetched gets an error line and exit code 1 while the others still
// print, as docker does; a daemon that cannot be reached ends it at once.
func inspectEach(cmd *cobra.Command, args []string, format string, fetch inspectFetch, pretty func(w io.Writer, typed any, raw []byte)) error {
	c, err := connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	s := streamsOf(cmd)
	var tmpl *template.Template
	if format != "" {
		if tmpl, err = parseTemplate(format); err != nil {
			return err
		}
	}
	var raws []json.RawMessage
	var errs []string
	for i, ref := range args {
		typed, raw, err := fetch(c, ref)
		if err != nil {
			if apiclient.IsConnectionFailed(err) || strings.HasPrefix(err.Error(), "Cannot connect") {
				return err
			}
			errs = append(errs, err.Error())
			continue
		}
		switch {
		case pretty != nil:
			if i > 0 {
				fmt.Fprintln(s.out)
			}
			pretty(s.out, typed, raw)
		case tmpl != nil:
			if err := formatInspect(s.out, tmpl, typed, raw); err != nil {
				return err
			}
		default:
			raws = append(raws, raw)
		}
	}
	if pretty == nil && tmpl == nil {
		if err := writeInspectJSON(s.out, raws); err != nil {
			return err
		}
	}
	return joinErrors(errs)
}

func inspectOne(c *apiClient, cmd *cobra.Command, ref, kind string) (any, []byte, error) {
	switch kind {
	case "container":
		return inspectContainer(c, cmd, ref)
	case "image":
		return inspectImage(c, cmd, ref)
	case "volume":
		return inspectVolume(c, cmd, ref)
	}
	typed, raw, err := inspectContainer(c, cmd, ref)
	if err == nil || strings.HasPrefix(err.Error(), "Cannot connect") {
		return typed, raw, err
	}
	typed, raw, err = inspectImage(c, cmd, ref)
	if err == nil || strings.HasPrefix(err.Error(), "Cannot connect") {
		return typed, raw, err
	}
	return nil, nil, fmt.Errorf("Error: No such object: %s", ref)
}
