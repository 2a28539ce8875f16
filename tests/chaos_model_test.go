package tests

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// The sequential specification the chaos test checks its history against
// (TestClusterChaos): the services of the store, each name on its own (a
// history is linearizable iff the history of each name is, so the checker
// partitions by name). Every write sets a label value no other write sets,
// so a label names the write that produced a service's current spec: an
// update carries the label its client read (with the version it sends), and
// succeeding is legal only if that label is still the current one, which is
// what the version check promises.

// chaosKind is the kind of an operation on the store.
type chaosKind int

const (
	opRead chaosKind = iota
	opCreate
	opUpdate
	opRemove
)

func (k chaosKind) String() string {
	return [...]string{"read", "create", "update", "remove"}[k]
}

// chaosOutcome is what the client saw of a write. An error that proves the
// write was refused (404, 409) is definite; a 5xx, a timeout or a dropped
// connection leaves it unknown: it may have been applied, at any time up to
// the end of the history.
type chaosOutcome int

const (
	outOK chaosOutcome = iota
	outNotFound
	outConflict
	outUnknown
)

func (o chaosOutcome) String() string {
	return [...]string{"ok", "not found", "conflict", "unknown"}[o]
}

// chaosInput is one operation as invoked.
type chaosInput struct {
	Kind     chaosKind
	Name     string
	Label    string // create, update: the label this write sets
	Replicas int    // create, update: the replicas this write sets
	Expect   string // update: the label read with the version sent
}

// chaosOutput is what the operation returned; for a read that found the
// service, Label and Replicas are what it read.
type chaosOutput struct {
	Outcome  chaosOutcome
	Label    string
	Replicas int
}

// chaosState is one name's service in the model.
type chaosState struct {
	Exists   bool
	Label    string
	Replicas int
}

func (s chaosState) String() string {
	if !s.Exists {
		return "absent"
	}
	return fmt.Sprintf("%s/%d", s.Label, s.Replicas)
}

// chaosStep returns every state the model can be in after op ran from s
// with that output; none means the output is impossible from s.
func chaosStep(s chaosState, in chaosInput, out chaosOutput) []chaosState {
	written := chaosState{Exists: true, Label: in.Label, Replicas: in.Replicas}
	switch in.Kind {
	case opRead:
		switch {
		case out.Outcome == outOK && s.Exists && s.Label == out.Label && s.Replicas == out.Replicas:
			return []chaosState{s}
		case out.Outcome == outNotFound && !s.Exists:
			return []chaosState{s}
		}
		return nil
	case opCreate:
		switch out.Outcome {
		case outOK:
			if !s.Exists {
				return []chaosState{written}
			}
		case outConflict: // the name is taken
			if s.Exists {
				return []chaosState{s}
			}
		case outUnknown:
			if !s.Exists {
				return []chaosState{s, written}
			}
			return []chaosState{s}
		}
		return nil
	case opUpdate:
		current := s.Exists && s.Label == in.Expect
		switch out.Outcome {
		case outOK:
			if current {
				return []chaosState{written}
			}
		case outNotFound:
			// The ID it addressed is gone: legal unless the service
			// the client read is still there.
			if !current {
				return []chaosState{s}
			}
		case outConflict:
			// The version also moves on writes of the managers' own
			// (update status), so a refusal is legal in any state.
			return []chaosState{s}
		case outUnknown:
			if current {
				return []chaosState{s, written}
			}
			return []chaosState{s}
		}
		return nil
	case opRemove:
		gone := chaosState{}
		switch out.Outcome {
		case outOK:
			if s.Exists {
				return []chaosState{gone}
			}
		case outNotFound:
			if !s.Exists {
				return []chaosState{s}
			}
		case outUnknown:
			return []chaosState{s, gone}
		}
		return nil
	}
	return nil
}

// chaosModel is the model for porcupine, partitioned by service name.
var chaosModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byName := map[string][]porcupine.Operation{}
		var names []string
		for _, op := range history {
			n := op.Input.(chaosInput).Name
			if _, ok := byName[n]; !ok {
				names = append(names, n)
			}
			byName[n] = append(byName[n], op)
		}
		sort.Strings(names)
		out := make([][]porcupine.Operation, 0, len(names))
		for _, n := range names {
			out = append(out, byName[n])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{chaosState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		next := chaosStep(state.(chaosState), input.(chaosInput), output.(chaosOutput))
		out := make([]interface{}, len(next))
		for i, s := range next {
			out[i] = s
		}
		return out
	},
	DescribeOperation: func(input, output interface{}) string {
		return describeChaosOp(input.(chaosInput), output.(chaosOutput))
	},
	DescribeState: func(state interface{}) string { return state.(chaosState).String() },
}

func describeChaosOp(in chaosInput, out chaosOutput) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s(%s", in.Kind, in.Name)
	switch in.Kind {
	case opCreate:
		fmt.Fprintf(&b, ", %s/%d", in.Label, in.Replicas)
	case opUpdate:
		fmt.Fprintf(&b, ", %s -> %s/%d", in.Expect, in.Label, in.Replicas)
	}
	b.WriteString(") -> ")
	if in.Kind == opRead && out.Outcome == outOK {
		fmt.Fprintf(&b, "%s/%d", out.Label, out.Replicas)
	} else {
		b.WriteString(out.Outcome.String())
	}
	return b.String()
}

// chaosOp builds a history entry for the model tests.
func chaosOp(client int, call, ret int64, in chaosInput, out chaosOutput) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

// TestChaosModel shows that the chaos test's checker fails the histories it
// must fail (a lost acknowledged create, a lost acknowledged update, two
// updates that both won from the same version, a stale read, a write
// refused as not found while its target exists) and passes the legal ones
// (an unknown outcome seen applied, or never seen).
func TestChaosModel(t *testing.T) {
	create := func(label string, r int) chaosInput {
		return chaosInput{Kind: opCreate, Name: "s", Label: label, Replicas: r}
	}
	update := func(from, label string, r int) chaosInput {
		return chaosInput{Kind: opUpdate, Name: "s", Expect: from, Label: label, Replicas: r}
	}
	read := chaosInput{Kind: opRead, Name: "s"}
	remove := chaosInput{Kind: opRemove, Name: "s"}
	ok := chaosOutput{Outcome: outOK}
	seen := func(label string, r int) chaosOutput { return chaosOutput{Outcome: outOK, Label: label, Replicas: r} }
	absent := chaosOutput{Outcome: outNotFound}
	unknown := chaosOutput{Outcome: outUnknown}
	for _, c := range []struct {
		name  string
		ops   []porcupine.Operation
		legal bool
	}{
		{"create then read", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(1, 20, 30, read, seen("a", 1)),
		}, true},
		{"lost acknowledged create", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(1, 20, 30, read, absent),
		}, false},
		{"lost acknowledged update", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(0, 20, 30, update("a", "b", 2), ok),
			chaosOp(1, 40, 50, read, seen("a", 1)),
		}, false},
		{"two updates won from one version", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(1, 20, 30, update("a", "b", 2), ok),
			chaosOp(2, 25, 35, update("a", "c", 3), ok),
		}, false},
		{"stale read after a remove", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(0, 20, 30, remove, ok),
			chaosOp(1, 40, 50, read, seen("a", 1)),
		}, false},
		{"update refused as not found while its service exists", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(1, 20, 30, update("a", "b", 2), absent),
		}, false},
		{"concurrent read sees either side", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(0, 20, 40, update("a", "b", 2), ok),
			chaosOp(1, 25, 30, read, seen("b", 2)),
			chaosOp(2, 26, 35, read, seen("b", 2)),
		}, true},
		{"reads disagree on the order", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(0, 20, 60, update("a", "b", 2), ok),
			chaosOp(1, 25, 30, read, seen("b", 2)),
			chaosOp(2, 35, 40, read, seen("a", 1)),
		}, false},
		{"unknown create seen applied", []porcupine.Operation{
			chaosOp(0, 0, 100, create("a", 1), unknown),
			chaosOp(1, 20, 30, read, absent),
			chaosOp(1, 40, 50, read, seen("a", 1)),
		}, true},
		{"unknown create never applied", []porcupine.Operation{
			chaosOp(0, 0, 100, create("a", 1), unknown),
			chaosOp(1, 40, 50, read, absent),
		}, true},
		{"conflict on a version moved by the managers", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), ok),
			chaosOp(1, 20, 30, update("a", "b", 2), chaosOutput{Outcome: outConflict}),
			chaosOp(1, 40, 50, read, seen("a", 1)),
		}, true},
		{"create refused as existing while absent", []porcupine.Operation{
			chaosOp(0, 0, 10, create("a", 1), chaosOutput{Outcome: outConflict}),
		}, false},
	} {
		res, _ := porcupine.CheckOperationsVerbose(chaosModel.ToModel(), c.ops, 0)
		if want := map[bool]porcupine.CheckResult{true: porcupine.Ok, false: porcupine.Illegal}[c.legal]; res != want {
			t.Errorf("%s: checker says %s, want %s", c.name, res, want)
		}
	}
}
