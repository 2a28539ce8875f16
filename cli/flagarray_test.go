package cli

import (
	"reflect"
	"testing"

	"github.com/spf13/pflag"
)

func TestStringArrayKeepsCommasAndOrder(t *testing.T) {
	var got []string
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.VarP((*stringArray)(&got), "env", "e", "")
	if err := fs.Parse([]string{"-e", "A=1,2", "--env", "B=", "-e=C"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=1,2", "B=", "C"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed %q, want %q", got, want)
	}
	if def := fs.Lookup("env").DefValue; def != "" {
		t.Fatalf("an unused array flag has default %q; help would show it", def)
	}
}
