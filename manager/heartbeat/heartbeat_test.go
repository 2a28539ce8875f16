package heartbeat

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

// TestMain lets this test binary be the answering process, as the daemon's
// binary is (Run's command executes it with ServerArg).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ServerArg {
		Main()
	}
	os.Exit(m.Run())
}

func newTable(t *testing.T, n int) *Table {
	t.Helper()
	tab, err := NewTable(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	tab.SetPeriod(time.Second)
	tab.Vouch(time.Unix(1<<32, 0))
	return tab
}

func TestAcceptAnswersASessionsBeats(t *testing.T) {
	tab := newTable(t, 4)
	slot, gen, key, err := tab.Assign()
	if err != nil {
		t.Fatal(err)
	}
	if _, n, ok := tab.Seen(slot, gen); !ok || n != 0 {
		t.Fatalf("fresh slot: Seen count %d ok %v", n, ok)
	}
	now := time.Unix(1000, 500)
	reply := tab.Accept(api.Beat{Slot: slot, Generation: gen, Seq: 1, Sent: 77}.Seal(nil, key), now)
	r, err := api.OpenBeatReply(reply, key)
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	if r.Seq != 1 || r.Sent != 77 || r.Answered != now.UnixNano() || r.Period != int64(time.Second) || r.Slot != slot || r.Generation != gen {
		t.Fatalf("answer %+v", r)
	}
	at, n, ok := tab.Seen(slot, gen)
	if !ok || n != 1 || !at.Equal(now) {
		t.Fatalf("Seen = %v, %d, %v; want %v, 1, true", at, n, ok, now)
	}
	if tab.Answered() != 1 {
		t.Fatalf("Answered = %d", tab.Answered())
	}
}

// What a stranger, a replaying observer or a node of an ended session
// sends gets no answer and records nothing.
func TestAcceptRefusesHostileBeats(t *testing.T) {
	tab := newTable(t, 4)
	slot, gen, key, err := tab.Assign()
	if err != nil {
		t.Fatal(err)
	}
	oslot, ogen, okey, err := tab.Assign()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(2000, 0)
	good := api.Beat{Slot: slot, Generation: gen, Seq: 5, Sent: 1}.Seal(nil, key)
	if tab.Accept(good, now) == nil {
		t.Fatal("a good beat was not answered")
	}
	forged := bytes.Clone(good)
	forged[len(forged)-1] ^= 1
	cases := map[string][]byte{
		"replayed":                good,
		"older seq":               api.Beat{Slot: slot, Generation: gen, Seq: 4, Sent: 1}.Seal(nil, key),
		"wrong MAC":               forged,
		"another session's key":   api.Beat{Slot: slot, Generation: gen, Seq: 6, Sent: 1}.Seal(nil, okey),
		"another slot, own key":   api.Beat{Slot: oslot, Generation: ogen, Seq: 6, Sent: 1}.Seal(nil, key),
		"wrong generation":        api.Beat{Slot: slot, Generation: gen + 100, Seq: 6, Sent: 1}.Seal(nil, key),
		"slot out of range":       api.Beat{Slot: 1 << 20, Generation: gen, Seq: 6, Sent: 1}.Seal(nil, key),
		"generation 0":            api.Beat{Slot: 3, Generation: 0, Seq: 6, Sent: 1}.Seal(nil, make([]byte, api.BeatKeySize)),
		"seq 0":                   api.Beat{Slot: slot, Generation: gen, Seq: 0, Sent: 1}.Seal(nil, key),
		"an answer sent back":     api.BeatReply{Slot: slot, Generation: gen, Seq: 9, Period: 1}.Seal(nil, key),
		"short":                   good[:api.BeatSize-1],
		"long":                    append(bytes.Clone(good), 0),
		"empty":                   nil,
		"zero key of a free slot": api.Beat{Slot: 3, Generation: 3, Seq: 6, Sent: 1}.Seal(nil, make([]byte, api.BeatKeySize)),
	}
	for name, pkt := range cases {
		if r := tab.Accept(pkt, now.Add(time.Second)); r != nil {
			t.Errorf("%s: answered", name)
		}
	}
	if at, n, _ := tab.Seen(slot, gen); n != 1 || !at.Equal(now) {
		t.Errorf("the session's record moved: %v, %d beats", at, n)
	}
	if _, n, _ := tab.Seen(oslot, ogen); n != 0 {
		t.Errorf("the other session got %d beats", n)
	}
	// An ended session's beats go unanswered, and its slot tells nothing
	// about the next session in it.
	tab.Release(slot, gen)
	if tab.Accept(api.Beat{Slot: slot, Generation: gen, Seq: 10, Sent: 1}.Seal(nil, key), now) != nil {
		t.Error("a released session's beat was answered")
	}
	if _, _, ok := tab.Seen(slot, gen); ok {
		t.Error("Seen of a released session")
	}
}

// Beats are answered only while the manager vouches for itself.
func TestAcceptOnlyWhileVouched(t *testing.T) {
	tab := newTable(t, 4)
	slot, gen, key, _ := tab.Assign()
	now := time.Unix(3000, 0)
	tab.Vouch(now.Add(-time.Nanosecond))
	if tab.Accept(api.Beat{Slot: slot, Generation: gen, Seq: 1, Sent: 1}.Seal(nil, key), now) != nil {
		t.Fatal("answered after the manager's vouching lapsed")
	}
	if _, n, _ := tab.Seen(slot, gen); n != 0 {
		t.Fatalf("%d beats recorded while not vouched", n)
	}
	tab.Vouch(now)
	if tab.Accept(api.Beat{Slot: slot, Generation: gen, Seq: 2, Sent: 1}.Seal(nil, key), now) == nil {
		t.Fatal("not answered while vouched")
	}
}

func TestAssignReusesSlotsLast(t *testing.T) {
	tab := newTable(t, 2)
	s1, g1, _, _ := tab.Assign()
	s2, g2, _, _ := tab.Assign()
	if _, _, _, err := tab.Assign(); err != ErrFull {
		t.Fatalf("third Assign of two slots: %v, want ErrFull", err)
	}
	tab.Release(s1, g1)
	tab.Release(s2, g2)
	tab.Release(s2, g2) // twice: no double entry
	s3, g3, _, _ := tab.Assign()
	s4, g4, _, _ := tab.Assign()
	if s3 != s1 || s4 != s2 || g3 == g1 || g4 == g2 || g3 == g4 {
		t.Fatalf("reuse: slots %d,%d gens %d,%d after %d,%d gens %d,%d", s3, s4, g3, g4, s1, s2, g1, g2)
	}
	if _, _, _, err := tab.Assign(); err != ErrFull {
		t.Fatalf("after reuse: %v, want ErrFull", err)
	}
}

func TestOpenTableRefusesOtherFiles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, headerSize+slotSize))
	if _, err := OpenTable(f); err == nil {
		t.Fatal("a file of zeros opened as a table")
	}
}

// beatOnce sends a beat of seq on a socket to addr and returns its
// answer, or an error after timeout.
func beatOnce(t *testing.T, addr *net.UDPAddr, slot uint32, gen, seq uint64, key []byte, timeout time.Duration) (api.BeatReply, error) {
	t.Helper()
	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(api.Beat{Slot: slot, Generation: gen, Seq: seq, Sent: time.Now().UnixNano()}.Seal(nil, key)); err != nil {
		return api.BeatReply{}, err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return api.BeatReply{}, err
	}
	return api.OpenBeatReply(buf[:n], key)
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRunInProcess(t *testing.T) {
	tab := newTable(t, 8)
	conn := listen(t)
	addr := conn.LocalAddr().(*net.UDPAddr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, conn, tab, nil, slog.Default()); close(done) }()
	slot, gen, key, _ := tab.Assign()
	if r, err := beatOnce(t, addr, slot, gen, 1, key, 2*time.Second); err != nil || r.Seq != 1 {
		t.Fatalf("beat: %+v, %v", r, err)
	}
	cancel()
	<-done
	if _, err := beatOnce(t, addr, slot, gen, 2, key, 200*time.Millisecond); err == nil {
		t.Fatal("answered after Run returned")
	}
}

// The answering process: started, answering, started again after it is
// killed, and gone when Run returns.
func TestRunProcess(t *testing.T) {
	tab := newTable(t, 8)
	conn := listen(t)
	addr := conn.LocalAddr().(*net.UDPAddr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		Run(ctx, conn, tab, func() *exec.Cmd {
			cmd := exec.Command(os.Args[0], ServerArg)
			cmd.Stderr = os.Stderr
			return cmd
		}, slog.Default())
		close(done)
	}()
	slot, gen, key, _ := tab.Assign()
	seq := uint64(0)
	answered := func() error {
		var err error
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
			seq++
			if _, err = beatOnce(t, addr, slot, gen, seq, key, 200*time.Millisecond); err == nil {
				return nil
			}
		}
		return err
	}
	if err := answered(); err != nil {
		t.Fatalf("no answer from the process: %v", err)
	}
	first := serverPids(t)
	if len(first) != 1 {
		t.Fatalf("answering processes: %v, want one", first)
	}
	if err := syscall.Kill(first[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := answered(); err != nil {
		t.Fatalf("no answer after the process was killed: %v", err)
	}
	second := serverPids(t)
	if len(second) != 1 || second[0] == first[0] {
		t.Fatalf("answering processes after the kill: %v (killed %d)", second, first[0])
	}
	cancel()
	<-done
	for end := time.Now().Add(5 * time.Second); alive(second[0]); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("answering process %d still runs after Run returned", second[0])
		}
	}
}

// serverPids lists this process's live children that run as ServerArg.
func serverPids(t *testing.T) []int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			cl, _ := os.ReadFile("/proc/" + f + "/cmdline")
			if pid > 0 && alive(pid) && strings.Contains(string(cl), ServerArg) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// alive reports whether pid runs (not a zombie: Run reaps its process).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}
