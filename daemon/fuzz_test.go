package daemon

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

// The parsers of client input must answer every input with a value or a
// 400, never a panic.

func FuzzParseChanges(f *testing.F) {
	for _, s := range []string{`CMD ["sh"]`, `ENV A=1 B="2 3"`, `LABEL 'a'=b`, "EXPOSE 80/udp", `VOLUME ["/x"`, "ENV x", `LABEL "unterminated`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := parseChanges(strings.Split(s, "\n")); err != nil && statusOf(err) != 400 {
			t.Fatalf("%q: %v is not a 400", s, err)
		}
	})
}

func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{`{"status":{"running":true}}`, `{"label":["a=b"]}`, `[]`, `{"name":{"x":false}}`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := parseFilters(s, validContainerFilters...); err != nil && statusOf(err) != 400 {
			t.Fatalf("%q: %v is not a 400", s, err)
		}
	})
}

func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"Image":"busybox","Cmd":["true"]}`,
		`{"Image":"x","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8080"}]},"Memory":1}}`,
		`{"Image":"x","HostConfig":{"NetworkMode":"container:y","PublishAllPorts":true}}`,
		`{"Image":"x","ExposedPorts":{"53/udp":{}},"HostConfig":{"SecurityOpt":["no-new-privileges"]}}`,
	} {
		f.Add(s)
	}
	d := newDaemon(context.Background(), Config{}, nil, nil, nil)
	f.Fuzz(func(t *testing.T, s string) {
		var req container.CreateRequest
		if err := decodeJSON(httptest.NewRequest("POST", "/containers/create", strings.NewReader(s)), &req); err != nil {
			if statusOf(err) != 400 {
				t.Fatalf("decode %q: %v", s, err)
			}
			return
		}
		if req.HostConfig != nil && req.HostConfig.PublishAllPorts {
			return // looks the image up: needs an image service
		}
		if _, err := d.createConfig(req); err != nil && statusOf(err) != 400 && statusOf(err) != 404 {
			t.Fatalf("create %q: %v (%d)", s, err, statusOf(err))
		}
	})
}
