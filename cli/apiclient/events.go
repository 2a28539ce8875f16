package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

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
	h := http.Header{"Accept": {"application/jsonl", "application/x-ndjson;q=0.9", "application/json-seq;q=0.5"}}
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/events", Query: q, Header: h})
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

// setTimestamp sets q's key to value as the daemon reads a time (Unix
// seconds, with a fraction for sub-second times) when value is not empty;
// see timestampParam.
func setTimestamp(q url.Values, key, value string) error {
	if value == "" {
		return nil
	}
	ts, err := timestampParam(value, time.Now())
	if err != nil {
		return err
	}
	q.Set(key, ts)
	return nil
}

// timestampParam turns a user's time (docker's --since and --until) into
// the API's: a duration ("42m") is that long before now; an RFC 3339 date
// or time, down to the hour and with or without seconds' fractions, is in
// now's zone unless it names one; a Unix time ("1136073600.5") is sent as
// it is. The answer is SECONDS.NANOSECONDS, or whole seconds for a
// duration.
func timestampParam(value string, now time.Time) (string, error) {
	if d, err := time.ParseDuration(value); err == nil && value != "0" {
		return strconv.FormatInt(now.Add(-d).Unix(), 10), nil
	}
	// A zone is "Z", "+hh:mm" or "-hh:mm": the latter is the third "-"
	// after the date's two.
	zoned := strings.ContainsAny(value, "zZ+") || strings.Count(value, "-") == 3
	layout := timeLayout(value, zoned)
	var t time.Time
	var err error
	if zoned {
		t, err = time.Parse(layout, value)
	} else {
		t, err = time.ParseInLocation(layout, value, time.FixedZone(now.Zone()))
	}
	if err == nil {
		return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()), nil
	}
	if strings.Contains(value, "-") {
		return "", err // a date that does not parse
	}
	if !isUnixTime(value) {
		return "", fmt.Errorf("failed to parse value as time or duration: %q", value)
	}
	return value, nil
}

// timeLayout is the layout that reads value: a date, a time down to the
// hour, the minute or the second, or a time with a fraction.
func timeLayout(value string, zoned bool) string {
	zone := ""
	if zoned {
		zone = "Z07:00"
	}
	switch {
	case strings.Contains(value, "."):
		return "2006-01-02T15:04:05.999999999" + zone
	case !strings.Contains(value, "T"):
		return "2006-01-02" + zone
	}
	colons := strings.Count(value, ":")
	if zoned && !strings.ContainsAny(value, "zZ") && colons > 0 {
		colons-- // the zone's own: +07:00
	}
	switch colons {
	case 0:
		return "2006-01-02T15" + zone
	case 1:
		return "2006-01-02T15:04" + zone
	}
	return "2006-01-02T15:04:05" + zone
}

// isUnixTime reports whether s is SECONDS or SECONDS.FRACTION, both
// decimal integers.
func isUnixTime(s string) bool {
	sec, frac, hasFrac := strings.Cut(s, ".")
	if _, err := strconv.ParseInt(sec, 10, 64); err != nil {
		return false
	}
	if hasFrac {
		if _, err := strconv.ParseInt(frac, 10, 64); err != nil {
			return false
		}
	}
	return true
}
