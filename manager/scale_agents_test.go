package manager

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/manager/ca"
)

// agentSpec is one simulated node's identity: its ID, certificate (PEM)
// and key (DER).
type agentSpec struct {
	ID   string
	Cert []byte
	Key  []byte
}

// agentResults is what the agents measured since their last reset.
type agentResults struct {
	HB []time.Duration
	// Fast is the fast path's sent -> answered of each beat it answered
	// (the answering process's clock minus the agent's: one machine).
	Fast              []time.Duration
	Written           map[int64]time.Duration
	Restarts, Refused map[string]int
	// Runtime is the agents' process's runtime figures since the last
	// reset (runtimeDelta.String).
	Runtime string
}

// agentPool runs the simulated agents of the scale benchmark: by default
// in a process of their own (this test binary running TestScaleAgents), so
// that the managers' process holds the managers only, as a real leader's
// machine would, and the agents' CPU is accounted apart;
// SHOAL_SCALE_AGENTS=inprocess runs them in the managers' process, as the
// benchmark did before 2026-12-05.
type agentPool struct {
	// in-process
	sims              []*simNode
	hb, fast          *latencies
	restarts, refused *lostSessions
	wg                sync.WaitGroup
	// child process
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
	done  chan struct{}
}

func startAgents(ctx context.Context, t *testing.T, rootPEM []byte, specs []agentSpec, leader func() string) (*agentPool, error) {
	if os.Getenv("SHOAL_SCALE_AGENTS") == "inprocess" {
		p := &agentPool{hb: &latencies{}, fast: &latencies{}, restarts: &lostSessions{}, refused: &lostSessions{}}
		sims, err := newSims(rootPEM, specs, leader)
		if err != nil {
			return nil, err
		}
		p.sims = sims
		for _, s := range sims {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				s.run(ctx, p.hb, p.fast, p.restarts, p.refused)
			}()
		}
		return p, nil
	}
	dir := t.TempDir()
	b, err := json.Marshal(struct {
		Root  []byte
		Nodes []agentSpec
	}{rootPEM, specs})
	if err != nil {
		return nil, err
	}
	specFile, leaderFile := filepath.Join(dir, "agents.json"), filepath.Join(dir, "leader")
	if err := os.WriteFile(specFile, b, 0o600); err != nil {
		return nil, err
	}
	writeLeader := func(addr string) {
		tmp := leaderFile + ".tmp"
		if os.WriteFile(tmp, []byte(addr), 0o600) == nil {
			os.Rename(tmp, leaderFile)
		}
	}
	last := leader()
	writeLeader(last)
	go func() { // the agents follow the leader, as the manager list lets agents
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			if addr := leader(); addr != last {
				last = addr
				writeLeader(addr)
			}
		}
	}()
	p := &agentPool{done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestScaleAgents$", "-test.count=1", "-test.timeout=0")
	p.cmd.Env = append(os.Environ(), "SHOAL_SCALE_AGENTS_SPEC="+specFile, "SHOAL_SCALE_AGENTS_LEADER="+leaderFile)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, os.Stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the agents' process: %w", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	// SHOAL_SCALE_AGENTS_NICE lowers the agents' priority: their CPU would
	// be their own machines' in a cluster, not the leader's.
	if v := os.Getenv("SHOAL_SCALE_AGENTS_NICE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 19 {
			return nil, fmt.Errorf("SHOAL_SCALE_AGENTS_NICE=%q: want 0-19", v)
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.cmd.Process.Pid, n); err != nil {
			return nil, fmt.Errorf("renice the agents' process: %w", err)
		}
	}
	return p, nil
}

func (p *agentPool) what() string {
	if p.cmd != nil {
		return "managers; agents apart"
	}
	return "managers + agents"
}

func (p *agentPool) reset() {
	if p.cmd != nil {
		fmt.Fprintln(p.stdin, "reset")
		return
	}
	p.hb.reset()
	p.fast.reset()
	p.restarts.reset()
	p.refused.reset()
}

// results ends the agents' process (in-process agents go on until ctx
// ends) and returns what they measured, and the process's CPU.
func (p *agentPool) results(t *testing.T) (*latencies, *latencies, *lostSessions, *lostSessions, time.Duration, string) {
	if p.cmd == nil {
		return p.hb, p.fast, p.restarts, p.refused, 0, ""
	}
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatal("the agents' process did not end within 60 s")
	}
	var res agentResults
	_, line, ok := strings.Cut(p.out.String(), "AGENTS-RESULT ")
	line, _, _ = strings.Cut(line, "\n")
	if !ok || json.Unmarshal([]byte(line), &res) != nil {
		t.Fatalf("the agents' process gave no result:\n%s", p.out.String())
	}
	hb := &latencies{d: res.HB, at: res.Written}
	cpu := p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
	return hb, &latencies{d: res.Fast}, &lostSessions{why: res.Restarts}, &lostSessions{why: res.Refused}, cpu, res.Runtime
}

func (p *agentPool) stop() {
	if p.cmd != nil {
		p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		return
	}
	p.wg.Wait()
	for _, s := range p.sims {
		s.close()
	}
}

func newSims(rootPEM []byte, specs []agentSpec, leader func() string) ([]*simNode, error) {
	root, err := ca.ParseRootCA(rootPEM, nil)
	if err != nil {
		return nil, err
	}
	sims := make([]*simNode, len(specs))
	for i, sp := range specs {
		key, err := x509.ParseECPrivateKey(sp.Key)
		if err != nil {
			return nil, err
		}
		tlsCfg, err := ClientTLS(root, sp.Cert, key)
		if err != nil {
			return nil, err
		}
		sims[i] = &simNode{id: sp.ID, tls: tlsCfg, conns: map[string]*simConns{}, leader: leader}
	}
	return sims, nil
}

// TestScaleAgents is the agents' process of TestScaleBench (it does
// nothing when run otherwise): the simulated nodes of the spec file, each
// following the leader the file SHOAL_SCALE_AGENTS_LEADER names, until
// stdin ends ("reset" lines restart the measurement); then one
// "AGENTS-RESULT {json}" line on stdout.
func TestScaleAgents(t *testing.T) {
	specFile, leaderFile := os.Getenv("SHOAL_SCALE_AGENTS_SPEC"), os.Getenv("SHOAL_SCALE_AGENTS_LEADER")
	if specFile == "" {
		t.Skip("the agents' process of TestScaleBench")
	}
	b, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Root  []byte
		Nodes []agentSpec
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	var leader atomic.Value
	readLeader := func() {
		if b, err := os.ReadFile(leaderFile); err == nil && len(b) > 0 {
			leader.Store(string(b))
		}
	}
	readLeader()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			readLeader()
		}
	}()
	sims, err := newSims(spec.Root, spec.Nodes, func() string { s, _ := leader.Load().(string); return s })
	if err != nil {
		t.Fatal(err)
	}
	hb, fast, restarts, refused := &latencies{}, &latencies{}, &lostSessions{}, &lostSessions{}
	var wg sync.WaitGroup
	for _, s := range sims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, hb, fast, restarts, refused)
		}()
	}
	rt0 := sampleRuntime()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "reset" {
			hb.reset()
			fast.reset()
			restarts.reset()
			refused.reset()
			rt0 = sampleRuntime()
		}
	}
	rt := rt0.delta(sampleRuntime())
	hb.mu.Lock()
	fast.mu.Lock()
	restarts.mu.Lock()
	refused.mu.Lock()
	out, err := json.Marshal(agentResults{HB: hb.d, Fast: fast.d, Written: hb.at, Restarts: restarts.why, Refused: refused.why, Runtime: rt.String()})
	refused.mu.Unlock()
	restarts.mu.Unlock()
	fast.mu.Unlock()
	hb.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("AGENTS-RESULT %s\n", out)
	cancel()
	wg.Wait()
	for _, s := range sims {
		s.close()
	}
}
