package cgroups

import (
	"errors"
	"maps"
	"slices"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{
		"0": {0}, "0-2": {0, 1, 2}, "0,3-4": {0, 3, 4}, "1\n": {1},
	} {
		got, err := ParseCPUList(in)
		if err != nil || !slices.Equal(slices.Sorted(maps.Keys(got)), want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a", "1-0", "-1", "0,", "1-2-3", "70000"} {
		if _, err := ParseCPUList(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseCPUList(%q): %v, want ErrInvalid", in, err)
		}
	}
}
