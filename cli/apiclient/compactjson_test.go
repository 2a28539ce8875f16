package apiclient

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// fill sets every field reachable from v (to a depth) to a value that
// differs from its zero value, varied by r.
func fill(v reflect.Value, r *rand.Rand, depth int) {
	if depth > 6 {
		return
	}
	switch v.Interface().(type) {
	case netip.Addr:
		v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + r.IntN(250))})))
		return
	case netip.Prefix:
		v.Set(reflect.ValueOf(netip.MustParsePrefix("198.18.0.0/15")))
		return
	case network.Port:
		v.Set(reflect.ValueOf(network.MustParsePort("80/tcp")))
		return
	case network.HardwareAddr:
		v.Set(reflect.ValueOf(network.HardwareAddr{2, 0, 0, 0, 0, byte(r.IntN(255))}))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString([]string{"x", "a\"b\\c", "<&>", "tab\there", "é\u2028", "\xff\xfe"}[r.IntN(6)])
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(1 + r.IntN(100)))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(1 + r.IntN(100)))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(0.5 + float64(r.IntN(100)))
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), r, depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(s.Index(i), r, depth+1)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		e := reflect.New(v.Type().Elem()).Elem()
		fill(k, r, depth+1)
		fill(e, r, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), r, depth+1)
			}
		}
	}
}

// decodesAlike checks that what a daemon decodes from compactJSON(req) is
// what it decodes from encoding/json's encoding of it.
func decodesAlike(t *testing.T, name string, req container.CreateRequest) {
	t.Helper()
	full, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("%s: encoding/json: %v", name, err)
	}
	compact, err := compactJSON(req)
	if err != nil {
		t.Fatalf("%s: compactJSON: %v", name, err)
	}
	if !json.Valid(compact) {
		t.Fatalf("%s: compactJSON wrote invalid JSON: %s", name, compact)
	}
	var want, got container.CreateRequest
	if err := json.Unmarshal(full, &want); err != nil {
		t.Fatalf("%s: decode encoding/json's: %v", name, err)
	}
	if err := json.Unmarshal(compact, &got); err != nil {
		t.Fatalf("%s: decode compact: %v\n%s", name, err, compact)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: decoded differently\ncompact: %s\nencoding/json: %s", name, compact, full)
	}
}

func TestCompactJSONDecodesAlike(t *testing.T) {
	// Every field set, with several random choices of values.
	for seed := range uint64(20) {
		var req container.CreateRequest
		fill(reflect.ValueOf(&req).Elem(), rand.New(rand.NewPCG(seed, 7)), 0)
		decodesAlike(t, "filled", req)
	}
	// What `run` sends, with the zero values that must survive: an empty
	// Entrypoint (it resets the image's), a pointer to false, an empty map.
	no := false
	decodesAlike(t, "run", container.CreateRequest{
		Config: &container.Config{Image: "busybox", Cmd: []string{"/bin/true"}, Entrypoint: []string{},
			Labels: map[string]string{}, Env: []string{"A=<b>"}},
		HostConfig: &container.HostConfig{AutoRemove: true, NetworkMode: "none",
			Resources: container.Resources{OomKillDisable: &no}},
	})
	decodesAlike(t, "empty", container.CreateRequest{})
}

// TestCompactJSONOmitsZeros: the point of it, a body without the zero
// fields; and what must stay does.
func TestCompactJSONOmitsZeros(t *testing.T) {
	no := false
	b, err := compactJSON(container.CreateRequest{
		Config:     &container.Config{Image: "busybox", Entrypoint: []string{}},
		HostConfig: &container.HostConfig{Resources: container.Resources{OomKillDisable: &no}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Image":"busybox","Entrypoint":[],"HostConfig":{"OomKillDisable":false}}`
	if string(b) != want {
		t.Errorf("compactJSON = %s, want %s", b, want)
	}
}

// TestCompactJSONStrings: any string, valid UTF-8 or not, decodes as
// encoding/json's encoding of it does.
func TestCompactJSONStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := r.IntN(12)
		var sb strings.Builder
		for range n {
			switch r.IntN(3) {
			case 0:
				sb.WriteByte(byte(r.IntN(256)))
			case 1:
				sb.WriteRune(rune(r.IntN(0x3000)))
			default:
				sb.WriteByte(byte(r.IntN(128)))
			}
		}
		s := sb.String()
		full, _ := json.Marshal(s)
		compact := appendString(nil, s)
		var want, got string
		if err := json.Unmarshal(full, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(compact, &got); err != nil {
			t.Fatalf("%q: %s: %v", s, compact, err)
		}
		if got != want || !utf8.ValidString(got) {
			t.Fatalf("%q: compact decodes to %q, encoding/json's to %q", s, got, want)
		}
	}
}

// TestCompactJSONRefuses: what it cannot write as encoding/json would, it
// refuses, and the caller falls back.
func TestCompactJSONRefuses(t *testing.T) {
	nan := 0.0
	nan /= nan
	for _, v := range []any{
		struct{ F float64 }{F: nan},
		struct {
			N int `json:",string"`
		}{N: 1},
		func() {},
	} {
		if _, err := compactJSON(v); err == nil {
			t.Errorf("compactJSON(%T) succeeded", v)
		}
	}
}
