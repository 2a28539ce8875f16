package ocicli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

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
