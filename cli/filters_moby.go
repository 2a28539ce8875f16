package cli

import "github.com/moby/moby/client"

// parseFilters is parseAPIFilters for the commands that still send their
// requests through the moby client. Transitional: when no caller is left,
// this file goes and parseAPIFilters takes the name parseFilters.
func parseFilters(vals []string) (client.Filters, error) {
	af, err := parseAPIFilters(vals)
	if err != nil {
		return nil, err
	}
	f := client.Filters{}
	for k, vs := range af {
		f.Add(k, vs...)
	}
	return f, nil
}
