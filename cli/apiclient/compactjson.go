package apiclient

import (
	"encoding"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The create request's body is the one large JSON document of `run`, and the
// CLI encodes it once per process: encoding/json first builds an encoder
// for every type reachable from container.Config, HostConfig and
// NetworkingConfig (their fields' names, tags and dominance, sorted, and a
// closure per field), which took 1.9-2.4 ms of a fresh process here, on the
// critical path of every `run` and `create`, to write 1.4 kB of mostly zero
// fields. compactJSON writes the same document without the zero values:
// a walk over the value, no per-type set-up.
//
// What a daemon decodes from it is what it decodes from encoding/json's
// output (TestCompactJSONDecodesAlike): a field is left out only when it is
// nil (pointer, interface, slice, map) or the zero value of a number, bool or
// string, or a struct with nothing to write, all of which decode to the zero
// value that the field starts from. An empty non-nil slice or map is
// written ([] and {}: an empty Entrypoint resets the image's), as is a
// pointer to a zero value (OomKillDisable: false). Types with their own
// MarshalJSON or MarshalText are encoded by them; anything else outside
// what the Engine API's types use (floats that are not finite, ",string"
// tags, maps with other keys) makes compactJSON fail, and the caller falls
// back to encoding/json.

// errNotCompact says a value needs encoding/json.
var errNotCompact = errors.New("not encodable compactly")

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// compactJSON encodes v without its zero-valued fields (see above).
func compactJSON(v any) ([]byte, error) {
	b, _, err := appendCompact(nil, reflect.ValueOf(v))
	return b, err
}

// appendCompact appends v's JSON to b and says whether it wrote anything
// but an omittable zero value; when it did not, b is returned as it was.
func appendCompact(b []byte, v reflect.Value) ([]byte, bool, error) {
	if !v.IsValid() {
		return append(b, "null"...), false, nil
	}
	t := v.Type()
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface {
		if t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) {
			m, err := json.Marshal(v.Interface())
			return append(b, m...), !v.IsZero(), err
		}
		if t.Implements(textMarshaler) {
			text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
			if err != nil {
				return b, false, err
			}
			return appendString(b, string(text)), !v.IsZero(), nil
		}
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return append(b, "null"...), false, nil
		}
		if t.Kind() == reflect.Pointer && (t.Implements(jsonMarshaler) || t.Implements(textMarshaler)) {
			m, err := json.Marshal(v.Interface())
			return append(b, m...), true, err
		}
		out, _, err := appendCompact(b, v.Elem())
		return out, true, err // a pointer to a zero value is not nothing
	case reflect.String:
		return appendString(b, v.String()), v.Len() > 0, nil
	case reflect.Bool:
		return strconv.AppendBool(b, v.Bool()), v.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(b, v.Int(), 10), v.Int() != 0, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.AppendUint(b, v.Uint(), 10), v.Uint() != 0, nil
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if f != f || f > 1e300 || f < -1e300 {
			return b, false, errNotCompact
		}
		return strconv.AppendFloat(b, f, 'g', -1, t.Bits()), f != 0, nil
	case reflect.Slice:
		if v.IsNil() {
			return append(b, "null"...), false, nil
		}
		if t.Elem().Kind() == reflect.Uint8 {
			m, err := json.Marshal(v.Interface()) // base64, as encoding/json
			return append(b, m...), true, err
		}
		return appendArray(b, v)
	case reflect.Array:
		out, _, err := appendArray(b, v)
		return out, !v.IsZero(), err
	case reflect.Map:
		if v.IsNil() {
			return append(b, "null"...), false, nil
		}
		return appendMap(b, v)
	case reflect.Struct:
		start := len(b)
		b = append(b, '{')
		b, n, err := appendFields(b, v, 0)
		if err != nil {
			return b, false, err
		}
		if n == 0 {
			return append(b[:start], "{}"...), false, nil
		}
		return append(b, '}'), true, nil
	}
	return b, false, errNotCompact
}

func appendArray(b []byte, v reflect.Value) ([]byte, bool, error) {
	b = append(b, '[')
	for i := range v.Len() {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, _, err = appendCompact(b, v.Index(i)); err != nil {
			return b, false, err
		}
	}
	return append(b, ']'), true, nil
}

// appendMap writes a map with string keys in the order of its keys, as
// encoding/json does.
func appendMap(b []byte, v reflect.Value) ([]byte, bool, error) {
	kt := v.Type().Key()
	if kt.Kind() != reflect.String || kt.Implements(textMarshaler) {
		m, err := json.Marshal(v.Interface())
		return append(b, m...), true, err
	}
	keys := v.MapKeys()
	slices.SortFunc(keys, func(x, y reflect.Value) int { return strings.Compare(x.String(), y.String()) })
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, k.String()), ':')
		var err error
		if b, _, err = appendCompact(b, v.MapIndex(k)); err != nil {
			return b, false, err
		}
	}
	return append(b, '}'), true, nil
}

// appendFields writes v's fields that are not zero, n of them after the
// n already written, inlining embedded structs as encoding/json does.
func appendFields(b []byte, v reflect.Value, n int) ([]byte, int, error) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",string,") {
			return b, n, errNotCompact
		}
		fv := v.Field(i)
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				ft, fv = ft.Elem(), fv.Elem()
			}
			if ft.Kind() == reflect.Struct && !ft.Implements(jsonMarshaler) && !ft.Implements(textMarshaler) {
				var err error
				if b, n, err = appendFields(b, fv, n); err != nil {
					return b, n, err
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		mark := len(b)
		if n > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, name), ':')
		out, wrote, err := appendCompact(b, fv)
		if err != nil {
			return out, n, err
		}
		if !wrote {
			b = b[:mark]
			continue
		}
		b = out
		n++
	}
	return b, n, nil
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD, as
// with encoding/json.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
