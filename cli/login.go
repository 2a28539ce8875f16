package cli

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/api/types/registry"
	"github.com/spf13/cobra"
)

// hubServer is the key docker keeps Docker Hub's credentials under.
const hubServer = "https://index.docker.io/v1/"

// dockerConfigPath is the client's config.json, as docker finds it.
func dockerConfigPath() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the docker config: %w", err)
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// readDockerConfig reads config.json as a generic document, so that the
// fields shoal does not know (credsStore, proxies, ...) are written back.
func readDockerConfig() (map[string]json.RawMessage, map[string]registry.AuthConfig, error) {
	p, err := dockerConfigPath()
	if err != nil {
		return nil, nil, err
	}
	doc := map[string]json.RawMessage{}
	auths := map[string]registry.AuthConfig{}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return doc, auths, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", p, err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", p, err)
	}
	if raw, ok := doc["auths"]; ok {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return nil, nil, fmt.Errorf("read %s: auths: %w", p, err)
		}
	}
	return doc, auths, nil
}

func writeDockerConfig(doc map[string]json.RawMessage, auths map[string]registry.AuthConfig) error {
	p, err := dockerConfigPath()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(auths)
	if err != nil {
		return err
	}
	doc["auths"] = raw
	b, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	// Credentials: readable by the user only, and never half-written.
	tmp, err := os.CreateTemp(filepath.Dir(p), ".config.json.*")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// serverKey is the config key of a registry: Hub's URL, else host[:port].
func serverKey(server string) string {
	s := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://"), "/")
	switch s {
	case "", "docker.io", "index.docker.io", "index.docker.io/v1", "registry-1.docker.io":
		return hubServer
	}
	return s
}

// registryAuthFor is the X-Registry-Auth value for the registry of ref,
// from the client's config; empty when there are no credentials.
func registryAuthFor(r imageRef) (string, error) {
	domain := r.Domain()
	_, auths, err := readDockerConfig()
	if err != nil {
		return "", err
	}
	ac, ok := auths[serverKey(domain)]
	if !ok {
		return "", nil
	}
	if ac.Username == "" && ac.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(ac.Auth)
		if err != nil {
			return "", fmt.Errorf("credentials of %s: bad auth field", serverKey(domain))
		}
		ac.Username, ac.Password, _ = strings.Cut(string(b), ":")
	}
	ac.Auth, ac.ServerAddress = "", serverKey(domain)
	b, err := json.Marshal(ac)
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

func newLoginCommand() *cobra.Command {
	var user, password string
	var stdin bool
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Authenticate to a registry",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := streamsOf(cmd)
			server := hubServer
			if len(args) == 1 {
				server = serverKey(args[0])
			}
			if stdin {
				if password != "" {
					return errors.New("--password and --password-stdin are mutually exclusive")
				}
				if user == "" {
					return errors.New("must provide --username with --password-stdin")
				}
				b, err := io.ReadAll(s.in)
				if err != nil {
					return fmt.Errorf("read password: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			}
			if user == "" || password == "" {
				br := bufio.NewReader(s.in)
				if user == "" {
					fmt.Fprint(s.out, "Username: ")
					l, _ := br.ReadString('\n')
					user = strings.TrimSpace(l)
				}
				if password == "" {
					fmt.Fprint(s.out, "Password: ")
					l, _ := br.ReadString('\n')
					password = strings.TrimRight(l, "\r\n")
				}
			}
			if user == "" || password == "" {
				return errors.New("username and password are required")
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.RegistryLogin(commandContext(cmd), registry.AuthConfig{Username: user, Password: password, ServerAddress: server}); err != nil {
				return c.apiError(err)
			}
			doc, auths, err := readDockerConfig()
			if err != nil {
				return err
			}
			auths[server] = registry.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
			if err := writeDockerConfig(doc, auths); err != nil {
				return err
			}
			fmt.Fprintln(s.out, "Login Succeeded")
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "Username")
	cmd.Flags().StringVarP(&password, "password", "p", "", "Password")
	cmd.Flags().BoolVar(&stdin, "password-stdin", false, "Take the password from stdin")
	return cmd
}

func newLogoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := hubServer
			if len(args) == 1 {
				server = serverKey(args[0])
			}
			doc, auths, err := readDockerConfig()
			if err != nil {
				return err
			}
			out := streamsOf(cmd).out
			if _, ok := auths[server]; !ok {
				fmt.Fprintf(out, "Not logged in to %s\n", server)
				return nil
			}
			delete(auths, server)
			if err := writeDockerConfig(doc, auths); err != nil {
				return err
			}
			fmt.Fprintf(out, "Removing login credentials for %s\n", server)
			return nil
		},
	}
}
