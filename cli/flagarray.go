package cli

import "strings"

// stringArray is a repeatable string flag (each use appends one value,
// commas kept), as pflag's StringArray, without its cost at definition:
// pflag renders every array flag's default through an encoding/csv writer
// with a 4 KB buffer, and the CLI defines some seventy of them at every
// start (7% of `shoal --version`'s CPU in perf).
type stringArray []string

// String is empty for an unused flag, so that help shows no default.
func (s *stringArray) String() string {
	if len(*s) == 0 {
		return ""
	}
	return "[" + strings.Join(*s, ",") + "]"
}

// Set appends one use's value.
func (s *stringArray) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// Type names the flag's kind in help output, as pflag does.
func (s *stringArray) Type() string { return "stringArray" }
