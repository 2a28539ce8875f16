package apiclient

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

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
