package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"text/template"
	"unicode"
)

// templateFuncs are the functions docker offers in --format templates.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "", err
		}
		return strings.TrimSpace(buf.String()), nil
	},
	"split": strings.Split,
	"join":  strings.Join,
	"title": titleCase,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"pad": func(s string, before, after int) string {
		return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
	},
	"truncate": truncateRunes,
	"println":  func(args ...any) string { return fmt.Sprintln(args...) },
}

// headerFuncs replace templateFuncs while rendering a table header: the
// header cells are plain strings, so every function passes its first
// argument through (as docker's HeaderFunctions do).
var headerFuncs = template.FuncMap{
	"json":     func(v any) string { return fmt.Sprint(v) },
	"split":    func(v any, _ string) string { return fmt.Sprint(v) },
	"join":     func(v any, _ string) string { return fmt.Sprint(v) },
	"title":    func(v any) string { return fmt.Sprint(v) },
	"lower":    func(v any) string { return fmt.Sprint(v) },
	"upper":    func(v any) string { return fmt.Sprint(v) },
	"pad":      func(v any, _, _ int) string { return fmt.Sprint(v) },
	"truncate": func(v any, _ int) string { return fmt.Sprint(v) },
	"println":  func(args ...any) string { return fmt.Sprint(args...) },
}

// prettyPrint is a value as docker's --pretty templates print it (its
// command.PrettyPrint): the first letter upper case, the rest lower, so
// that a time reads "2026-01-02 03:04:05 +0000 utc".
func prettyPrint(v any) string {
	s := fmt.Sprint(v)
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + strings.ToLower(s[1:])
}

func titleCase(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		defer func() { prev = r }()
		if unicode.IsSpace(prev) || prev == '-' || prev == '_' {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}

func truncateRunes(s string, n int) string {
	if n < 0 {
		n = 0
	}
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

// parseTemplate parses a --format template with docker's functions.
func parseTemplate(format string) (*template.Template, error) {
	t, err := template.New("").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return nil, fmt.Errorf("template parsing error: %w", err)
	}
	return t, nil
}

// tableFormat is a --format value split into docker's parts: whether it
// starts with "table" (headers and aligned columns) and the row template,
// with literal \t and \n turned into tabs and newlines.
type tableFormat struct {
	table bool
	row   string
}

func parseTableFormat(format, defaultRow string) tableFormat {
	f := tableFormat{row: format}
	if rest, ok := strings.CutPrefix(format, "table"); ok {
		f.table = true
		f.row = strings.TrimSpace(rest)
		if f.row == "" {
			f.row = defaultRow
		}
	}
	f.row = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(f.row)
	return f
}

// renderRows writes one line per row through format; table formats get a
// header line from headers (field name -> column title) and columns padded
// like docker's (tabwriter 10,1,3).
func renderRows(w io.Writer, format tableFormat, headers map[string]string, rows []any) error {
	tmpl, err := parseTemplate(format.row)
	if err != nil {
		return err
	}
	var body bytes.Buffer
	for _, r := range rows {
		if err := tmpl.Execute(&body, r); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		body.WriteByte('\n')
	}
	if !format.table {
		_, err := body.WriteTo(w)
		return err
	}
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	if h, err := template.New("").Funcs(headerFuncs).Option("missingkey=zero").Parse(format.row); err == nil {
		var head bytes.Buffer
		if h.Execute(&head, headers) == nil {
			head.WriteByte('\n')
			if _, err := head.WriteTo(tw); err != nil {
				return err
			}
		}
	}
	if _, err := body.WriteTo(tw); err != nil {
		return err
	}
	return tw.Flush()
}

// rowJSON marshals a row type as docker's formatter contexts do for
// `{{json .}}`: every exported method taking no arguments and returning a
// string, by name.
func rowJSON(v any) ([]byte, error) {
	m := map[string]string{}
	rv := reflect.ValueOf(v)
	rt := rv.Type()
	for i := 0; i < rt.NumMethod(); i++ {
		meth := rt.Method(i)
		if meth.Type.NumIn() != 1 || meth.Type.NumOut() != 1 || meth.Type.Out(0).Kind() != reflect.String {
			continue
		}
		m[meth.Name] = rv.Method(i).Call(nil)[0].String()
	}
	return json.Marshal(m)
}

// formatInspect renders one inspected object through tmpl as docker does:
// first against the typed value, and if that fails (a field spelled as in
// the JSON, such as .Id or .NanoCpus), against the raw JSON decoded with
// numbers kept as written.
func formatInspect(w io.Writer, tmpl *template.Template, typed any, raw []byte) error {
	var buf bytes.Buffer
	if typed != nil {
		if err := tmpl.Execute(&buf, typed); err == nil {
			buf.WriteByte('\n')
			_, err = buf.WriteTo(w)
			return err
		}
		buf.Reset()
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return fmt.Errorf("unable to read inspect data: %w", err)
	}
	if err := tmpl.Option("missingkey=error").Execute(&buf, generic); err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

// writeInspectJSON prints raw inspect documents as docker does: a JSON
// array indented by four spaces.
func writeInspectJSON(w io.Writer, raws []json.RawMessage) error {
	if raws == nil {
		raws = []json.RawMessage{}
	}
	b, err := json.MarshalIndent(raws, "", "    ")
	if err != nil {
		return fmt.Errorf("encode inspect output: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}
