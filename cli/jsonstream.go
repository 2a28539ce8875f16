package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// streamMessage is one line of the daemon's JSON progress stream (import,
// load, pull). Both the modern errorDetail and the legacy error field are
// read so an error is never lost.
type streamMessage struct {
	Stream      string `json:"stream,omitempty"`
	Status      string `json:"status,omitempty"`
	Progress    string `json:"progress,omitempty"`
	ID          string `json:"id,omitempty"`
	ErrorText   string `json:"error,omitempty"`
	ErrorDetail *struct {
		Message string `json:"message,omitempty"`
	} `json:"errorDetail,omitempty"`
	Aux json.RawMessage `json:"aux,omitempty"`
	// ProgressDetail marks a progress-bar update (a pull's "Downloading").
	ProgressDetail json.RawMessage `json:"progressDetail,omitempty"`
}

// printJSONStream copies a progress stream to out as docker does without a
// terminal: "stream" text as is, "status" lines (prefixed with the ID) one
// per line. An error message in the stream ends it and is returned.
// A body that is not JSON at all is copied through unchanged.
func printJSONStream(r io.Reader, out io.Writer) error {
	br := bufio.NewReader(r)
	if b, err := br.Peek(1); err == nil && strings.TrimSpace(string(b)) != "" && b[0] != '{' {
		_, err := io.Copy(out, br)
		return err
	}
	dec := json.NewDecoder(br)
	for {
		var m streamMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read daemon response: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.ErrorText != "" {
			return errors.New(m.ErrorText)
		}
		if len(m.ProgressDetail) > 0 && string(m.ProgressDetail) != "{}" {
			continue // as docker without a terminal: no progress bars
		}
		switch {
		case m.Stream != "":
			fmt.Fprint(out, m.Stream)
		case m.Status != "":
			line := m.Status
			if m.ID != "" {
				line = m.ID + ": " + line
			}
			if m.Progress != "" {
				line += " " + m.Progress
			}
			fmt.Fprintln(out, line)
		}
	}
}
