package ocicli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// openPty allocates a pseudo-terminal on the host's devpts and returns its
// master and slave.
func openPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("console: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("console: pty number: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	return m, s, nil
}

// sendConsole passes the pty master to the process listening on socket, as
// the OCI runtime command line specifies: SCM_RIGHTS with a JSON message
// {"type":"terminal","container":id}.
func sendConsole(socket, id string, master *os.File) error {
	conn, err := net.Dial("unix", socket)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	msg, _ := json.Marshal(map[string]string{"type": "terminal", "container": id})
	rights := unix.UnixRights(int(master.Fd()))
	if _, _, err := conn.(*net.UnixConn).WriteMsgUnix(msg, rights, nil); err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	return nil
}
