package build

import (
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// FuzzDockerfile feeds Dockerfiles from users to what the builder does
// before any step runs (parse, meta ARGs, the stages a target needs, each
// instruction's expansion, EXPOSE's ports): errors are fine, panics are not.
func FuzzDockerfile(f *testing.F) {
	f.Add("ARG V=1\nFROM busybox:${V} AS a\nRUN echo $V\nFROM a\nCOPY --from=0 /x /y\nEXPOSE 80 53/udp 1-3\n", "a")
	f.Add("FROM scratch\nENV A=${B:-x} C=$A\nLABEL \"k\"=v\nONBUILD RUN true\nHEALTHCHECK CMD true\n", "")
	f.Add("# escape=`\nFROM x\nRUN a `\n b\n", "nope")
	f.Fuzz(func(t *testing.T, dockerfile, target string) {
		res, err := parser.Parse(strings.NewReader(dockerfile))
		if err != nil {
			return
		}
		stages, meta, err := instructions.Parse(res.AST, nil)
		if err != nil || len(stages) == 0 {
			return
		}
		r := &buildRun{lex: shell.NewLex(res.EscapeToken), usedArgs: map[string]bool{}, opts: Options{Target: target}}
		if r.metaArgs(meta) != nil {
			return
		}
		if _, err := r.neededStages(stages); err != nil {
			return
		}
		for _, st := range stages {
			r.expandMeta(st.BaseName)
			s := &stageState{args: map[string]string{}}
			for _, cmd := range st.Commands {
				if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
					env := s.env()
					_ = ex.Expand(func(w string) (string, error) {
						v, _, err := r.lex.ProcessWord(w, env)
						return v, err
					})
				}
				if e, ok := cmd.(*instructions.ExposeCommand); ok {
					_, _ = exposedPorts(e.Ports)
				}
			}
		}
	})
}
