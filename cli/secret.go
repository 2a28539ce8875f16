package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

// `shoal secret` and `shoal config`: create, ls, inspect, rm, as docker's
// (cli/command/secret and cli/command/config of the docker CLI). Docker's
// --driver and --template-driver are not offered: the daemon keeps secrets
// itself and does not template them.

func newSecretCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Manage Swarm secrets", Args: noArgs}
	cmd.AddCommand(newSecretCreateCommand(), secretKind.inspectCommand(), secretKind.listCommand(), secretKind.removeCommand())
	return cmd
}

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Manage Swarm configs", Args: noArgs}
	cmd.AddCommand(newConfigCreateCommand(), configKind.inspectCommand(), configKind.listCommand(), configKind.removeCommand())
	return cmd
}

// maxSecretSize is swarm's limit of a secret's data; like docker's, the
// CLI reads at most twice that much (the daemon says what is too big).
const maxSecretSize = 500 * 1024

// readSecretData is docker's: the data of `secret create` from the file,
// or standard input for "-"; empty data is refused here.
func readSecretData(in io.Reader, file string) ([]byte, error) {
	switch file {
	case "-":
		data, err := io.ReadAll(io.LimitReader(in, 2*maxSecretSize))
		if err != nil {
			return nil, fmt.Errorf("error reading from STDIN: %w", err)
		}
		if len(data) == 0 {
			return nil, errors.New("error reading from STDIN: data is empty")
		}
		return data, nil
	case "":
		return nil, errors.New("secret file is required")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("error reading from %s: %w", file, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 2*maxSecretSize))
	if err != nil {
		return nil, fmt.Errorf("error reading from %s: %w", file, err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("error reading from %s: data is empty", file)
	}
	return data, nil
}

func newSecretCreateCommand() *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] SECRET [file|-]",
		Short: "Create a secret from a file or STDIN as content",
		// As docker's: one argument is accepted by the parser and refused
		// for want of data (it is docker's --driver form).
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := parseKVMap(labels)
			if err != nil {
				return err
			}
			file := ""
			if len(args) == 2 {
				file = args[1]
			}
			data, err := readSecretData(streamsOf(cmd).in, file)
			if err != nil {
				return err
			}
			spec := swarm.SecretSpec{Annotations: swarm.Annotations{Name: args[0], Labels: l}, Data: data}
			return withClient(cmd, func(c *apiClient) error {
				id, err := c.SecretCreate(commandContext(cmd), spec)
				if err == nil {
					fmt.Fprintln(streamsOf(cmd).out, id)
				}
				return err
			})
		},
	}
	cmd.Flags().VarP((*stringArray)(&labels), "label", "l", "Secret labels")
	return cmd
}

func newConfigCreateCommand() *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] CONFIG file|-",
		Short: "Create a config from a file or STDIN",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := parseKVMap(labels)
			if err != nil {
				return err
			}
			// Docker's: the open error as is, no check of the size; empty
			// data is the daemon's to refuse.
			in := streamsOf(cmd).in
			if args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			data, err := io.ReadAll(in)
			if err != nil {
				return fmt.Errorf("Error reading content from %q: %v", args[1], err)
			}
			spec := swarm.ConfigSpec{Annotations: swarm.Annotations{Name: args[0], Labels: l}, Data: data}
			return withClient(cmd, func(c *apiClient) error {
				id, err := c.ConfigCreate(commandContext(cmd), spec)
				if err == nil {
					fmt.Fprintln(streamsOf(cmd).out, id)
				}
				return err
			})
		},
	}
	cmd.Flags().VarP((*stringArray)(&labels), "label", "l", "Config labels")
	return cmd
}

// swarmObject is what ls and inspect --pretty show of a secret or a
// config.
type swarmObject struct {
	ID string
	swarm.Meta
	Annotations swarm.Annotations
	Driver      string
	Data        []byte
}

func secretObject(s swarm.Secret) swarmObject {
	o := swarmObject{ID: s.ID, Meta: s.Meta, Annotations: s.Spec.Annotations}
	if s.Spec.Driver != nil {
		o.Driver = s.Spec.Driver.Name
	}
	return o
}

func configObject(c swarm.Config) swarmObject {
	return swarmObject{ID: c.ID, Meta: c.Meta, Annotations: c.Spec.Annotations, Data: c.Spec.Data}
}

// objectKind is what differs between the secret and config commands.
type objectKind struct {
	name, plural string // "secret", "secrets"
	list         func(ctx context.Context, c *apiClient, f apiclient.Filters) ([]swarmObject, error)
	// inspect returns the typed object (what --format sees), its
	// swarmObject (--pretty) and the daemon's JSON.
	inspect func(ctx context.Context, c *apiClient, ref string) (any, swarmObject, []byte, error)
	remove  func(ctx context.Context, c *apiClient, ref string) error
	row     func(o swarmObject, now time.Time) any
	// table is the default `ls` row; pretty the `inspect --pretty`
	// template (docker's).
	table, pretty string
}

var secretKind = objectKind{
	name: "secret", plural: "secrets",
	list: func(ctx context.Context, c *apiClient, f apiclient.Filters) ([]swarmObject, error) {
		items, err := c.SecretList(ctx, f)
		out := make([]swarmObject, len(items))
		for i, s := range items {
			out[i] = secretObject(s)
		}
		return out, err
	},
	inspect: func(ctx context.Context, c *apiClient, ref string) (any, swarmObject, []byte, error) {
		s, raw, err := c.SecretInspect(ctx, ref)
		return s, secretObject(s), raw, err
	},
	remove: func(ctx context.Context, c *apiClient, ref string) error { return c.SecretRemove(ctx, ref) },
	row:    func(o swarmObject, now time.Time) any { return secretRow{objectRow{o, now}} },
	table:  "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
	pretty: `ID:              {{.ID}}
Name:              {{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Driver:            {{.Driver}}
Created at:        {{.CreatedAt}}
Updated at:        {{.UpdatedAt}}`,
}

var configKind = objectKind{
	name: "config", plural: "configs",
	list: func(ctx context.Context, c *apiClient, f apiclient.Filters) ([]swarmObject, error) {
		items, err := c.ConfigList(ctx, f)
		out := make([]swarmObject, len(items))
		for i, s := range items {
			out[i] = configObject(s)
		}
		return out, err
	},
	inspect: func(ctx context.Context, c *apiClient, ref string) (any, swarmObject, []byte, error) {
		cfg, raw, err := c.ConfigInspect(ctx, ref)
		return cfg, configObject(cfg), raw, err
	},
	remove: func(ctx context.Context, c *apiClient, ref string) error { return c.ConfigRemove(ctx, ref) },
	row:    func(o swarmObject, now time.Time) any { return configRow{objectRow{o, now}} },
	table:  "{{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
	pretty: `ID:			{{.ID}}
Name:			{{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Created at:            	{{.CreatedAt}}
Updated at:            	{{.UpdatedAt}}
Data:
{{.Data}}`,
}

// objectHeaders are the `ls` column titles, docker's.
var objectHeaders = map[string]string{
	"ID": "ID", "Name": "NAME", "Driver": "DRIVER", "CreatedAt": "CREATED", "UpdatedAt": "UPDATED", "Labels": "LABELS",
}

// objectRow is one line of `secret ls` and `config ls`; its methods are
// the --format fields.
type objectRow struct {
	o   swarmObject
	now time.Time
}

func (r objectRow) ID() string        { return r.o.ID }
func (r objectRow) Name() string      { return r.o.Annotations.Name }
func (r objectRow) CreatedAt() string { return humanAgo(r.o.CreatedAt, r.now) }
func (r objectRow) UpdatedAt() string { return humanAgo(r.o.UpdatedAt, r.now) }

// Labels is k=v,... sorted by key.
func (r objectRow) Labels() string {
	var kv []string
	for _, k := range sortedKeys(r.o.Annotations.Labels) {
		kv = append(kv, k+"="+r.o.Annotations.Labels[k])
	}
	return strings.Join(kv, ",")
}

// Label is the value of one label (the {{.Label "k"}} of docker).
func (r objectRow) Label(k string) string { return r.o.Annotations.Labels[k] }

// secretRow adds the secret's driver; a config has none.
type secretRow struct{ objectRow }

func (r secretRow) Driver() string               { return r.o.Driver }
func (r secretRow) MarshalJSON() ([]byte, error) { return rowJSON(r) }

type configRow struct{ objectRow }

func (r configRow) MarshalJSON() ([]byte, error) { return rowJSON(r) }

func (k objectKind) listCommand() *cobra.Command {
	var quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List " + k.plural,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filters)
			if err != nil {
				return err
			}
			var items []swarmObject
			if err := withClient(cmd, func(c *apiClient) error {
				items, err = k.list(commandContext(cmd), c, f)
				return err
			}); err != nil {
				return err
			}
			return k.printList(streamsOf(cmd).out, items, format, quiet, time.Now())
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	fl.VarP((*stringArray)(&filters), "filter", "f", "Filter output based on conditions provided")
	return cmd
}

// printList is docker's listing: sorted by name; -q prints the IDs unless
// a --format other than "table" is given.
func (k objectKind) printList(w io.Writer, items []swarmObject, format string, quiet bool, now time.Time) error {
	sort.SliceStable(items, func(i, j int) bool { return naturalLess(items[i].Annotations.Name, items[j].Annotations.Name) })
	if format == "" {
		format = "table"
	}
	tf := parseTableFormat(format, k.table)
	if quiet && format == "table" {
		tf = tableFormat{row: "{{.ID}}"}
	}
	rows := make([]any, len(items))
	for i, o := range items {
		rows[i] = k.row(o, now)
	}
	return renderRows(w, tf, objectHeaders, rows)
}

func (k objectKind) inspectCommand() *cobra.Command {
	var format string
	var pretty bool
	upper := strings.ToUpper(k.name)
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] " + upper + " [" + upper + "...]",
		Short: "Display detailed information on one or more " + k.plural,
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pretty {
				format = "pretty"
			}
			if strings.HasPrefix(format, "pretty") && format != "pretty" {
				return errors.New("cannot supply extra formatting options to the pretty template")
			}
			ctx := commandContext(cmd)
			if format == "pretty" {
				return k.inspectPretty(cmd, args)
			}
			return inspectEach(cmd, args, format, func(c *apiClient, ref string) (any, []byte, error) {
				typed, _, raw, err := k.inspect(ctx, c, ref)
				if err != nil {
					return nil, nil, c.apiError(err)
				}
				return typed, raw, nil
			}, nil)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "Print the information in a human friendly format")
	return cmd
}

// inspectPretty is inspect --pretty as docker's: every object through the
// pretty template, one after the other; the first that cannot be read
// ends it with nothing printed.
func (k objectKind) inspectPretty(cmd *cobra.Command, args []string) error {
	c, err := connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	objs := make([]swarmObject, 0, len(args))
	for _, ref := range args {
		_, o, _, err := k.inspect(commandContext(cmd), c, ref)
		if err != nil {
			return c.apiError(err)
		}
		objs = append(objs, o)
	}
	return k.printPretty(streamsOf(cmd).out, objs)
}

// printPretty renders objs through the kind's pretty template.
func (k objectKind) printPretty(w io.Writer, objs []swarmObject) error {
	tmpl, err := template.New("").Parse(k.pretty)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, o := range objs {
		if err := tmpl.Execute(&buf, prettyObject{o}); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		buf.WriteByte('\n')
	}
	_, err = buf.WriteTo(w)
	return err
}

// prettyObject is what the pretty templates see (docker's inspect
// contexts): times as Go prints them, the data as text.
type prettyObject struct{ o swarmObject }

func (p prettyObject) ID() string                { return p.o.ID }
func (p prettyObject) Name() string              { return p.o.Annotations.Name }
func (p prettyObject) Labels() map[string]string { return p.o.Annotations.Labels }
func (p prettyObject) Driver() string            { return p.o.Driver }
func (p prettyObject) CreatedAt() string         { return prettyPrint(p.o.CreatedAt) }
func (p prettyObject) UpdatedAt() string         { return prettyPrint(p.o.UpdatedAt) }
func (p prettyObject) Data() string              { return string(p.o.Data) }

func (k objectKind) removeCommand() *cobra.Command {
	upper := strings.ToUpper(k.name)
	return &cobra.Command{
		Use:     "rm " + upper + " [" + upper + "...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more " + k.plural,
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachArg(cmd, args, func(c *apiClient, ref string) error {
				return k.remove(commandContext(cmd), c, ref)
			})
		},
	}
}
