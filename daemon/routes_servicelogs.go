package daemon

import (
	"net/http"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/shim"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// serviceLogs serves GET /services/{id}/logs and /tasks/{id}/logs: the
// lines of the tasks on every node, through the leader's log broker, framed
// as docker does (stdcopy; timestamp, then the details, then the line).
func (d *Daemon) serviceLogs(w http.ResponseWriter, r *http.Request) {
	conn, err := d.swarm.managerConn()
	if err != nil {
		writeError(w, err)
		return
	}
	c := api.NewControlClient(conn)
	sel := &api.LogSelector{}
	if r.Pattern == "GET /tasks/{id}/logs" {
		resp, err := c.GetTask(r.Context(), &api.GetTaskRequest{TaskId: r.PathValue("id")})
		if err != nil {
			writeError(w, api.FromGRPC(err))
			return
		}
		sel.TaskIds = []string{resp.GetTask().GetId()}
	} else {
		resp, err := c.GetService(r.Context(), &api.GetServiceRequest{ServiceId: r.PathValue("id")})
		if err != nil {
			writeError(w, api.FromGRPC(err))
			return
		}
		sel.ServiceIds = []string{resp.GetService().GetId()}
	}
	q := r.URL.Query()
	stdout, stderr := boolParam(r, "stdout"), boolParam(r, "stderr")
	if !stdout && !stderr {
		writeError(w, badRequest("Bad parameters: you must choose at least one stream"))
		return
	}
	tail, err := tailParam(q.Get("tail"))
	if err != nil {
		writeError(w, err)
		return
	}
	opts := &api.LogOptions{Follow: boolParam(r, "follow"), Tail: int64(tail)}
	since, err := parseTime("since", q.Get("since"))
	if err != nil {
		writeError(w, err)
		return
	}
	if !since.IsZero() {
		opts.Since = timestamppb.New(since)
	}
	ctx, cancel := d.streamContext(r)
	defer cancel()
	stream, err := api.NewLogBrokerClient(conn).SubscribeLogs(ctx, &api.SubscribeLogsRequest{Selector: sel, Options: opts})
	if err != nil {
		writeError(w, api.FromGRPC(err))
		return
	}
	timestamps, details := boolParam(r, "timestamps"), boolParam(r, "details")
	w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	w.WriteHeader(http.StatusOK)
	fw := newFlushWriter(w)
	fw.Flush()
	for {
		m, err := stream.Recv()
		if err != nil {
			if err := api.FromGRPC(err); ctx.Err() == nil && api.ClassOf(err) != nil {
				// As dockerd: the stream so far, then why it is incomplete.
				_ = shim.WriteFrame(fw, 2, []byte("error from daemon in stream: "+err.Error()+"\n"))
			}
			return
		}
		for _, l := range m.GetLines() {
			if l.GetStream() == 1 && !stdout || l.GetStream() == 2 && !stderr {
				continue
			}
			var line []byte
			if timestamps {
				line = append(line, l.GetTimestamp().AsTime().UTC().Format("2006-01-02T15:04:05.000000000Z07:00")...)
				line = append(line, ' ')
			}
			if details {
				lc := l.GetContext()
				line = append(line, "com.docker.swarm.node.id="+lc.GetNodeId()+",com.docker.swarm.service.id="+
					lc.GetServiceId()+",com.docker.swarm.task.id="+lc.GetTaskId()+" "...)
			}
			line = append(line, l.GetData()...)
			if err := shim.WriteFrame(fw, byte(l.GetStream()), line); err != nil {
				return
			}
		}
	}
}
