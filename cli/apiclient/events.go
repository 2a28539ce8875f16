package apiclient

import (
	"context"
	"encoding/json"
	"io"
	"net/url"

	"github.com/moby/moby/api/types/events"
)

// EventsOptions are the parameters of Events.
type EventsOptions struct {
	// Since and Until bound the events by time, as ContainerLogsOptions'
	// do; without Until the stream follows new events.
	Since, Until string
	Filters      Filters
}

// Events is GET /events. It returns once the daemon has answered the
// request's headers: the events then come on the first channel, until the
// stream ends, fails or ctx is cancelled; that end is one error on the
// second channel (io.EOF when the daemon ended the stream), which is then
// closed.
func (c *Client) Events(ctx context.Context, o EventsOptions) (<-chan events.Message, <-chan error) {
	msgs, errc := make(chan events.Message), make(chan error, 1)
	body, contentType, err := c.openEvents(ctx, o)
	if err != nil {
		errc <- err
		close(errc)
		return msgs, errc
	}
	go func() {
		defer close(errc)
		defer body.Close()
		var r io.Reader = body
		if contentType == "application/json-seq" {
			r = &rsFilter{r: body}
		}
		dec := json.NewDecoder(r)
		for {
			var m events.Message
			if err := dec.Decode(&m); err != nil {
				if ctx.Err() != nil {
					err = ctx.Err()
				}
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	return msgs, errc
}

func (c *Client) openEvents(ctx context.Context, o EventsOptions) (io.ReadCloser, string, error) {
	q := url.Values{}
	if err := setTimestamp(q, "since", o.Since); err != nil {
		return nil, "", err
	}
	if err := setTimestamp(q, "until", o.Until); err != nil {
		return nil, "", err
	}
	setFilters(q, o.Filters)
	// The stream formats the client reads, best first.
	h := Header{"Accept": {"application/jsonl", "application/x-ndjson;q=0.9", "application/json-seq;q=0.5"}}
	resp, err := c.Do(ctx, Request{Method: "GET", Path: "/events", Query: q, Header: h})
	if err != nil {
		return nil, "", err
	}
	return resp.Body, resp.Header.Get("Content-Type"), nil
}

// rsFilter drops the record separators (0x1E) of a JSON text sequence
// (RFC 7464), leaving the JSON documents for a json.Decoder.
type rsFilter struct{ r io.Reader }

func (f *rsFilter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		kept := p[:0]
		for _, b := range p[:n] {
			if b != 0x1E {
				kept = append(kept, b)
			}
		}
		if len(kept) > 0 || err != nil || n == 0 {
			if err == io.EOF && len(kept) > 0 {
				err = nil // the next Read says EOF
			}
			return len(kept), err
		}
	}
}
