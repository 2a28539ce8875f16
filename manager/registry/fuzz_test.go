package registry

import "testing"

// FuzzParseManifest feeds manifests from the network to the parser: it must
// never panic, and what it accepts has a known media type and valid
// references.
func FuzzParseManifest(f *testing.F) {
	f.Add(MediaTypeOCIManifest, manifestFor("{}", "layer", ""))
	f.Add(MediaTypeOCIIndex, `{"schemaVersion":2,"manifests":[{"digest":"sha256:`+
		"0000000000000000000000000000000000000000000000000000000000000000"+`","size":3}]}`)
	f.Add("", `{"schemaVersion":2,"mediaType":"`+MediaTypeDockerList+`","manifests":[]}`)
	f.Add(MediaTypeOCIManifest, `{"schemaVersion":2,"config":{"digest":"sha512:00","size":-1},"subject":null}`)
	f.Fuzz(func(t *testing.T, ct, body string) {
		p, err := parseManifest(ct, []byte(body))
		if err != nil {
			return
		}
		switch p.rec.MediaType {
		case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerList:
		default:
			t.Fatalf("accepted media type %q", p.rec.MediaType)
		}
		for _, d := range p.rec.Refs {
			if d.Validate() != nil {
				t.Fatalf("accepted reference %q", d)
			}
		}
	})
}
